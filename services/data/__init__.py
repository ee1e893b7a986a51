"""The data service: securities, the trade calendar and daily bars (demo market or Tushare), served over REST."""
