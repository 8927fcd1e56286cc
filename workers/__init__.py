"""Model backends behind one small protocol."""
