"""Operations: plain functions from paths to report dataclasses. They never print."""
