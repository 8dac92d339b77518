"""Lightning callbacks of kr_lightning."""
