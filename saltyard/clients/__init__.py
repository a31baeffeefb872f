"""HTTP clients for the components saltyard drives."""
