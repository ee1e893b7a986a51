"""A fake MiniQMT (xtquant) for the bridge's tests: the documented names, signatures, data types, codes and quirks
of xttrader/xtdata, over a simulated broker (`xtquant.fake`). Tests only: never installed, never on the platform's
path."""
