"""The example's LightGBM model.txt as an MLflow pyfunc model ("models from code"), for
benchmarks/bench_serve_vs_mlflow.py.

Why not mlflow.lightgbm.log_model: its pyfunc hands the request's DataFrame to Booster.predict
as it is, and LightGBM refuses text columns (contract, payment_method, ...: "pandas dtypes must
be int, float or bool"). A user serving this model with MLflow writes this wrapper; it does
exactly what `workbench serve`'s default LightGBM predictor does (runtime/wb_serve.py
load_release), so both servers compute the same thing and the benchmark compares the servers.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class LightGBMText(PythonModel):
    def load_context(self, context):
        import lightgbm

        self.booster = lightgbm.Booster(model_file=context.artifacts["model_txt"])
        self.features = list(self.booster.feature_name())

    def predict(self, context, model_input, params=None):
        import pandas as pd

        frame = model_input[self.features].copy()
        for column in frame.columns:
            # text becomes a category; LightGBM maps it with the levels stored at training
            if not pd.api.types.is_numeric_dtype(frame[column]) and \
                    not isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype("category")
        return self.booster.predict(frame).tolist()


mlflow.models.set_model(LightGBMText())
