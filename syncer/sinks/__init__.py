"""One sink per strategy behind one interface (``base.Sink``).

- ``reload.py``: render upstream.conf, ``nginx -t``, reload nginx.
- ``api.py``: push what changed to the dynamic-upstream endpoint inside nginx.
"""
