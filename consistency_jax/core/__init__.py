"""The math, on arrays and plain numbers: schedules, parametrizations, the PF-ODE and its
samplers, and one loss per paper."""
