import torch

cpu = torch.device("cpu")
device = cpu
dtype = torch.float32
