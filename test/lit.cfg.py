# lit configuration for xfmr: .mlir tests run through xfmr-opt and FileCheck.
import os

import lit.formats

config.name = "xfmr"
config.test_format = lit.formats.ShTest(execute_external=True)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "fuzz",
                   "unit"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.xfmr_obj_root, "test")

# Our tools first, then LLVM's FileCheck/not/split-file.
config.environment["PATH"] = os.pathsep.join(
    [config.xfmr_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", os.environ["PATH"])]
)
config.substitutions.append(("%python", config.python_executable))
# The pure-Python package (checkpoint generator, NumPy reference) from the source tree.
config.environment["PYTHONPATH"] = os.path.join(config.xfmr_src_root, "python")
config.substitutions.append(("%xfmr_src", config.xfmr_src_root))
config.substitutions.append(("%xfmr_obj", config.xfmr_obj_root))

# Real checkpoints from ../shared (absent on some machines: those tests say UNSUPPORTED).
shared_models = os.path.join(os.path.dirname(config.xfmr_src_root), "shared", "models")
if os.path.isdir(os.path.join(shared_models, "stories260K")):
    config.available_features.add("stories260k")
    config.substitutions.append(("%stories260k", os.path.join(shared_models, "stories260K")))
