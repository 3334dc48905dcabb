"""The facesearch command line."""
