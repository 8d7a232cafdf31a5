"""An unmodified SageMaker XGBoost script-mode script: regression on abalone-style LIBSVM data.

Written like the public "abalone" script-mode example: the XGBoost image's helper modules load the data
(``get_dmatrix``) and, on several hosts, start Rabit (``distributed.rabit_run``) after waiting for every
host name to resolve (``entry_point._wait_hostname_resolution``). The booster is pickled to
``<model_dir>/xgboost-model``.
"""

import argparse
import json
import logging
import os
import pickle as pkl

import xgboost as xgb
from sagemaker_containers import entry_point
from sagemaker_xgboost_container import distributed
from sagemaker_xgboost_container.data_utils import get_dmatrix

logging.basicConfig(level=logging.INFO)


def _xgb_train(params, dtrain, evals, num_boost_round, model_dir, is_master):
    """Train on this host; the master host saves the model."""
    booster = xgb.train(params=params, dtrain=dtrain, evals=evals, num_boost_round=num_boost_round)
    if is_master:
        model_location = os.path.join(model_dir, "xgboost-model")
        with open(model_location, "wb") as f:
            pkl.dump(booster, f)
        logging.info("Stored trained model at %s", model_location)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()

    # Hyperparameters, passed as --name value
    parser.add_argument("--max_depth", type=int)
    parser.add_argument("--eta", type=float)
    parser.add_argument("--gamma", type=int)
    parser.add_argument("--min_child_weight", type=int)
    parser.add_argument("--subsample", type=float)
    parser.add_argument("--verbosity", type=int)
    parser.add_argument("--objective", type=str)
    parser.add_argument("--num_round", type=int)
    parser.add_argument("--tree_method", type=str, default="auto")

    # Where the container puts things: defaults from its environment variables
    parser.add_argument("--output_data_dir", type=str, default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    parser.add_argument("--model_dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", type=str, default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--sm_hosts", type=str, default=os.environ.get("SM_HOSTS"))
    parser.add_argument("--sm_current_host", type=str, default=os.environ.get("SM_CURRENT_HOST"))

    args, _ = parser.parse_known_args()

    sm_hosts = json.loads(args.sm_hosts)
    sm_current_host = args.sm_current_host

    dtrain = get_dmatrix(args.train, "libsvm")
    dval = get_dmatrix(args.validation, "libsvm")
    watchlist = [(dtrain, "train"), (dval, "validation")] if dval is not None else [(dtrain, "train")]

    train_hp = {
        "max_depth": args.max_depth,
        "eta": args.eta,
        "gamma": args.gamma,
        "min_child_weight": args.min_child_weight,
        "subsample": args.subsample,
        "verbosity": args.verbosity,
        "objective": args.objective,
        "tree_method": args.tree_method,
    }

    xgb_train_args = dict(
        params=train_hp,
        dtrain=dtrain,
        evals=watchlist,
        num_boost_round=args.num_round,
        model_dir=args.model_dir,
    )

    if len(sm_hosts) > 1:
        # Wait until every host can find the others, then train under Rabit.
        entry_point._wait_hostname_resolution()
        distributed.rabit_run(
            exec_fun=_xgb_train,
            args=xgb_train_args,
            include_in_training=(dtrain is not None),
            hosts=sm_hosts,
            current_host=sm_current_host,
            update_rabit_args=True,
        )
    elif dtrain:
        # One host: train directly.
        xgb_train_args["is_master"] = True
        _xgb_train(**xgb_train_args)
    else:
        raise ValueError("Training channel must have data to train model.")


def model_fn(model_dir):
    """Load the booster for inference."""
    with open(os.path.join(model_dir, "xgboost-model"), "rb") as f:
        return pkl.load(f)
