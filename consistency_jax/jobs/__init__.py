"""What launch.py and pipeline.py run: the training loop (with its teacher) and the end-to-end
pipeline; `convert` imports a published EDM network as a teacher run."""
