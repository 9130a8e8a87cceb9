"""Models-from-code entry point of the EntroAD pyfunc: MLflow runs this file when it loads
the model (no pickled Python object is stored). Only :mod:`entroad.tracking.pyfunc` imports
its path; nothing imports it as a module."""

import mlflow

from entroad.tracking.pyfunc import EntroADPyfunc

mlflow.models.set_model(EntroADPyfunc())
