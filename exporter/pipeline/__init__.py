"""From a source's records to exposition bytes: classify, aggregate, keep state, render, per lane."""
