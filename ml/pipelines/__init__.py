"""The numeric core of the CRM's models: pandas / numpy / scikit-learn / scipy only.

Nothing in this package imports Django. ``ml/data.py`` turns the database into the
frames described in :mod:`ml.pipelines.schema` and writes the results back.
"""
