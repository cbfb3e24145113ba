"""Recipes for ``ckpttool verify-resume --recipe``: see ckpttool.resume.recipe for the protocol."""
