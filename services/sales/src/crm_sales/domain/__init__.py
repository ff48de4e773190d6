"""Rules of products, prices and price lists (no I/O)."""
