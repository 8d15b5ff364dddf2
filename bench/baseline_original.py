"""The original design, kept as a benchmark fixture and never shipped.

Flask's development server (`app.run(threaded=True)`), `request.get_json()` into a pandas DataFrame,
scikit-learn `DecisionTreeClassifier.predict`, `jsonify` of the list of class names.

    python bench/baseline_original.py PORT      # MODEL_PATH=<joblib file> (bench.py writes it)
"""

import os
import sys

import joblib
import pandas as pd
from flask import Flask, jsonify, request

model = joblib.load(os.environ["MODEL_PATH"])
app = Flask(__name__)


@app.route("/inference", methods=["POST"])
def inference():
    records = request.get_json()
    df = pd.DataFrame(records)
    predictions = model.predict(df)
    return jsonify(predictions.tolist())


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    app.run(host="127.0.0.1", port=port, threaded=True)
