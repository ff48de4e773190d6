"""The customers service: profiles, contacts, duplicate checks, ownership and the
public pool, history, locks and the recycle bin."""
