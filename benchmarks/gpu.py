"""The same tables on a GPU: bf16 autocast, PyTorch SDPA (flash / memory-efficient kernels).

Runs train_step (without --quick at a GPU-sized model: d_model 512, 6 layers, b=64, n=512),
streaming (KNNMemory on the GPU) and fraction_of_peak on cuda. knn stays a CPU benchmark (faiss-cpu). Without cuda it prints a skip
message, an empty JSON object, and exits 0.
"""
from __future__ import annotations

import json
import sys

import torch
from common import finish, quick_flag


def main() -> int:
    args = quick_flag()
    if not torch.cuda.is_available():
        print("gpu: skipped, no CUDA device visible (torch.cuda.is_available() is False)")
        print(json.dumps({}))
        return 0
    import fraction_of_peak
    import streaming
    import train_step

    tables, ratios = [], {}
    for name, module in (("train_step", train_step), ("streaming", streaming),
                         ("fraction_of_peak", fraction_of_peak)):
        kwargs = {"device": "cuda"} if module is fraction_of_peak else {"device": "cuda", "bf16": True}
        t, r = module.run(args.quick, **kwargs)
        tables += t
        ratios.update({f"{name}.{k}": v for k, v in r.items()})
    finish("gpu (bf16 autocast + SDPA)", ratios, tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
