"""Float64 NumPy reference implementation of the supported architectures.

Written from the models' published equations (Hugging Face modeling-code semantics), for
checking the compiler's numerics; not fast.

    model = xfmr.reference.load("path/to/checkpoint")
    cache = model.new_cache()
    logits = model.forward([1, 2, 3], cache)        # float64 [3, vocab]
    ids, rows = model.generate_greedy([1], 16)     # 16 ids and the logit rows they came from

Supported: LlamaForCausalLM (rope_scaling linear, llama3), MistralForCausalLM (sliding
window), Qwen2ForCausalLM (q/k/v bias), MixtralForCausalLM, DeepseekV3ForCausalLM (MLA,
YaRN, noaux_tc routing, FP8 block-quantized weights).
"""

from .cache import Cache
from .models import ARCHITECTURES, Model, architecture_of, load, read_config

__all__ = ["ARCHITECTURES", "Cache", "Model", "architecture_of", "load", "read_config"]
