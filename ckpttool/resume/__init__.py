"""Resume verification: static checks, the shadow run, recipe runs."""
