"""An unmodified SageMaker script-mode training script (PyTorch): a small MLP regressor on CSV data.

Runs as one process, or under torchrun (``distribution={"torch_distributed": {"enabled": True}}``): then
every process joins the process group from the rendezvous variables torchrun sets and trains its shard of
the data with DistributedDataParallel. Rank 0 saves the ``state_dict`` to the model directory.
"""

import argparse
import glob
import json
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


class Net(nn.Module):
    def __init__(self, n_features, hidden=32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x):
        return self.layers(x).squeeze(-1)


def load_data(data_dir):
    # CSV files without a header, the target in the first column (the SageMaker convention).
    files = sorted(glob.glob(os.path.join(data_dir, "*.csv")))
    if not files:
        raise ValueError(f"no .csv files in {data_dir}")
    data = np.concatenate([np.loadtxt(f, delimiter=",", ndmin=2, dtype=np.float32) for f in files])
    return torch.from_numpy(data[:, 1:]), torch.from_numpy(data[:, 0])


def train(args):
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    use_cuda = args.num_gpus > 0 and torch.cuda.is_available()
    if distributed:
        local_rank = int(os.environ["LOCAL_RANK"])
        backend = args.backend or ("nccl" if use_cuda else "gloo")
        dist.init_process_group(backend=backend)
        rank, world_size = dist.get_rank(), dist.get_world_size()
        print(
            f"distributed: backend={backend} rank={rank} local_rank={local_rank} world_size={world_size} "
            f"master={os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} host={args.current_host}"
        )
    else:
        local_rank, rank, world_size = 0, 0, 1
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    print(f"device: {device} (hosts={args.hosts}, num_gpus={args.num_gpus})")
    torch.manual_seed(args.seed)

    features, target = load_data(args.data_dir)
    dataset = TensorDataset(features, target)
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank) if distributed else None
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler)

    model = Net(features.shape[1], args.hidden).to(device)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.MSELoss()

    for epoch in range(1, args.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
        print(f"epoch {epoch}: train_loss={total / count:.6f}")

    if rank == 0:
        net = model.module if distributed else model
        path = os.path.join(args.model_dir, "model.pth")
        torch.save(net.cpu().state_dict(), path)
        with open(os.path.join(args.model_dir, "model_info.json"), "w") as f:
            json.dump({"n_features": int(features.shape[1]), "hidden": args.hidden}, f)
        print(f"saved the model's state_dict to {path}")
    if distributed:
        dist.destroy_process_group()


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model_info.json")) as f:
        info = json.load(f)
    model = Net(info["n_features"], info["hidden"])
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu"))
    return model.eval()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", type=str, default=None, help="gloo or nccl (default: by device)")

    # Container environment
    parser.add_argument("--hosts", type=list, default=json.loads(os.environ["SM_HOSTS"]))
    parser.add_argument("--current-host", type=str, default=os.environ["SM_CURRENT_HOST"])
    parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--data-dir", type=str, default=os.environ["SM_CHANNEL_TRAINING"])
    parser.add_argument("--num-gpus", type=int, default=os.environ["SM_NUM_GPUS"])

    train(parser.parse_args())
