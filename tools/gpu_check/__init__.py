"""``make gpu-check`` / ``python tools/gpu_check.py``: the GPU check of issue 20, ready to fire.

Why it exists: no session so far was lent a GPU, so the suite's CUDA path (bf16 autocast,
``channels_last``, ``torch.compile``, ``MaskedSGD``'s foreach path, masks on the device) is
written but unmeasured. A session that draws one gets 15 minutes of device time, at most
10 minutes per command, and loses the machine after 30 s idle. This one command spends such a
lease on what matters, in this order, each part under its own wall-time cap, writing its
results after every part (a command killed at its limit still returns what it wrote):

0. environment: python, torch, CUDA, GPU name and free memory, and Hydra (installed from the
   carried wheels when missing); the CIFAR-10 JPEG copy is decoded once into the cache.
1. correctness on the device, BEFORE any timing: masked weights exactly 0.0 after steps under
   bf16 autocast, ``channels_last`` and ``torch.compile``; the count rule ``floor(s*N + 0.5)`` at
   11M (ResNet-18) and 20M (VGG-19) weights, with ties and layerwise; a mask update does not
   recompile the forward (a compile backend that counts the graphs it is given); resuming from
   a checkpoint gives the next epoch's numbers (deterministic algorithms on for that check).
2. the bench on the device, through ``tools/bench.py``'s own functions: the ResNet-18 /
   CIFAR-10 epoch time of the suite's loop (dense and PMP, bf16, ``channels_last``; compile
   off, then on), the exact global selection at 11M / 20M weights, and the data loader.
3. one PMP ResNet-18 run at sparsity 0.729 and its dense baseline through the real entry
   point (``python -m repro.train experiment=pmp_resnet18 tracking=none trainer.epochs=N``,
   ``pruner=dense`` for the baseline) with as many epochs N as the measured epoch time
   allows in what is left of the budget; both checkpoint every epoch, so calling again (same
   command, while the machine is warm) resumes them. Final numbers come from the run's log.
4. everything small under ONE folder (``--out``; ``$OUT`` when set, else ``results/gpu/``):
   ``gpu-check.json``, ``gpu-check.md`` and ``bench.md``, nothing else (the device returns at
   most 8 files, 2 folders deep; checkpoints stay in the state folder).

Budget (defaults, for one command of a 15-minute lease): ``--budget 540`` s in all, leaving a
minute of the 600 s command limit for start-up and copies; caps of 60 s (environment), 90 s
(decoding CIFAR-10), 150 s (correctness: the first inductor compile of ResNet-18 is most of
it), 180 s (bench), and at least ``--min-train 120`` s kept for training. Resuming: state,
checkpoints and Hydra's run folders live in ``.cache/gpu-check/<mode>/`` (git-ignored, kept on
the device between calls while it stays warm); a second call skips what is done and resumes
the training runs with the epoch count planned by the first call (``--fresh`` starts over).

What the device lacks, and what to carry (``make gpu-pack`` prepares it here): the device runs
Python 3.12 with torch 2.11 and has no hydra-core, omegaconf or mlflow, and ``../shared`` does
not travel. ``make gpu-pack`` puts the wheels of hydra-core and omegaconf (``pip download
--only-binary=:all: --python-version 3.12 --no-deps``) and of antlr4-python3-runtime 4.9.3
(sdist-only on PyPI: built here into a pure-Python wheel with ``pip wheel``) into
``.gpu-carry/wheels/``, copies the CIFAR-10 JPEG tree into ``.gpu-carry/data/``, records the
commit in ``.gpu-carry/provenance.json`` (the device gets no ``.git``) and prints the size and
the carry list: ``carry=[".gpu-carry"]``. When ``import hydra`` fails, this script installs the
wheels with ``pip install --no-index --find-links .gpu-carry/wheels --no-deps --target
.cache/gpu-check/site`` and puts that folder on ``sys.path`` and ``PYTHONPATH``; MLflow is never
needed (``tracking=none``).

``--dry`` (``make gpu-check DRY=1``): the same script and the same JSON on the CPU, at tiny
width, batch and data subsets, compile checks with the ``eager`` backend (inductor would spend
minutes building C++ on 2 cores), about a minute on 2 cores; the state goes to
``.cache/gpu-check/dry/`` and the files to ``.cache/gpu-check/dry-out/`` unless ``--out``.

The code, one job per module (``tools/gpu_check.py`` is the script entry, kept at the path the
device command names). Only the standard library is imported at the top of any of them: torch,
``repro`` and the bench are imported inside the functions, after :func:`gpu_check.environment.ensure_hydra`
has made Hydra importable on the device.

- :mod:`gpu_check.common`: the folders and constants every part shares, the date and the command line;
- :mod:`gpu_check.limits`: the budget arithmetic and what the device brings back (output limits);
- :mod:`gpu_check.profiles`: the sizes of the GPU and the dry mode;
- :mod:`gpu_check.phases`: one call's state, its phases and their wall-time caps;
- :mod:`gpu_check.environment`: 0, the device, Hydra from the carried wheels, provenance, CIFAR-10;
- :mod:`gpu_check.checks`: 1, correctness on the device;
- :mod:`gpu_check.bench_part`: 2, the bench's own functions on the device;
- :mod:`gpu_check.training`: 3, the two training runs through ``repro-train`` and their logs;
- :mod:`gpu_check.outputs`: 4, ``gpu-check.json``, ``gpu-check.md`` and ``bench.md``;
- :mod:`gpu_check.pack`: ``make gpu-pack``;
- :mod:`gpu_check.cli`: the command line and the order of the phases.
"""
