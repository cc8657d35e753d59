"""On the device: join the fp16 parts of the pruned e5-small into an fp32 model dir at models/multilingual-e5-small."""

import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

src = Path(".gpu/small")
parts = Path(".gpu/e5p")
out = Path("models/multilingual-e5-small")
out.mkdir(parents=True, exist_ok=True)
sd = {**load_file(".whl/e5emb.safetensors"), **load_file(str(parts / "layers.safetensors"))}
save_file({k: v.float().contiguous() for k, v in sd.items()}, str(out / "model.safetensors"))
for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "provenance.json"):
    shutil.copy(src / f, out / f)
print("assembled", out, len(sd), "tensors")
