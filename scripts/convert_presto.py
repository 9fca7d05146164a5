#!/usr/bin/env python
"""Convert the published Presto weights into an agrinb checkpoint: `python scripts/convert_presto.py [SRC_DIR]`.

Reads `default_model.pt` (a plain state dict saved from CUDA tensors) with `weights_only=True`, keeps the published
parameter names (agrinb's `Presto` module uses them, so no renaming is needed), and writes
`agrinb/resources/presto.pt` with `agrinb.core.save_checkpoint` (kind 'Presto') plus the MIT notice as
`agrinb/resources/PRESTO_LICENSE`. `agrinb.models.presto.pretrained()` loads the result offline."""
import sys, shutil, hashlib
from pathlib import Path
import torch
from agrinb.core import save_checkpoint

src = Path(sys.argv[1] if len(sys.argv) > 1 else '/work/shared/data/presto')
dst = Path(__file__).resolve().parent.parent / 'agrinb' / 'resources'
sd = torch.load(src / 'default_model.pt', map_location='cpu', weights_only=True)
state = {k: v.detach().float().contiguous().clone() for k, v in sd.items()}
sha = hashlib.sha256((src / 'default_model.pt').read_bytes()).hexdigest()
save_checkpoint(dst / 'presto.pt', 'Presto', state, source='nasaharvest/presto default_model.pt', source_sha256=sha,
                license='MIT (see PRESTO_LICENSE)', n_params=sum(v.numel() for v in state.values()))
shutil.copyfile(src / 'LICENSE', dst / 'PRESTO_LICENSE')
print(f"wrote {dst / 'presto.pt'} ({len(state)} tensors, {sum(v.numel() for v in state.values()):,} values; "
      f"source sha256 {sha[:12]}) and {dst / 'PRESTO_LICENSE'}")
