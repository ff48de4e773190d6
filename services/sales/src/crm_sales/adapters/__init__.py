"""The sales service's store: collections, indexes, versioned stores."""
