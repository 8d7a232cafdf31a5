"""An unmodified SageMaker script-mode training script (scikit-learn on iris)."""

import argparse
import glob
import os

import joblib
import pandas as pd
from sklearn.linear_model import LogisticRegression

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    # SageMaker passes a one-letter hyperparameter as "-C <value>" (and longer ones as "--name <value>").
    parser.add_argument("-C", "--C", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--model-dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAIN"))
    args, _ = parser.parse_known_args()

    files = sorted(glob.glob(os.path.join(args.train, "*.csv")))
    df = pd.concat([pd.read_csv(f) for f in files])
    y = df["species"]
    X = df.drop(columns=["species"])
    print(f"training on {len(df)} rows, {X.shape[1]} features, C={args.C}")

    model = LogisticRegression(C=args.C, max_iter=args.max_iter)
    model.fit(X, y)
    print(f"train accuracy: {model.score(X, y):.4f}")
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
