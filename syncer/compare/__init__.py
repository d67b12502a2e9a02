"""``syncer compare``: replay logged requests against a primary, a candidate and a
secondary, and report per route where the candidate really differs (Diffy's method:
primary-vs-secondary differences are noise, subtracted per route and field); and the
nginx side of online shadowing (``mirror``) with a comparison of its logs.

Nothing here is imported by ``syncer run``: the CLI loads it lazily.
"""
