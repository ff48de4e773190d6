"""The sales service: the product catalogue and its price lists (issue 18's foundation)."""
