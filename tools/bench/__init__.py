"""``make bench`` / ``python tools/bench.py``: is the suite fast, measured against its peers?

A tool, not part of the installed package: it imports ``repro`` (the editable install, or the
checkout on ``PYTHONPATH``) and is run by path.

Everything that is compared runs in ONE process, interleaved (A B C D, then D C B A, ...),
after one discarded warm-up round, so that drift on a shared machine hits every contender
alike. Each ratio is the median over repeats of the per-round (paired) ratio.

1. training throughput (images/s) of the suite's one loop (:class:`repro.engine.Engine`),
   ``dense`` and ``pmp``, with pruning active in every measured step window (the linear
   schedule spans the whole benchmark; the mask is recomputed every ``update_frequency``
   steps and every measurement holds the same number of updates);
2. the peer to beat: the same PMP schedule done the common way, with
   ``torch.nn.utils.prune.global_unstructured`` (L1Unstructured over the current weights,
   forward pre-hooks) in a bare loop;
3. a bare PyTorch loop on the same model and in-memory data (randperm, slice, normalise,
   forward, backward, step): the suite's dense loop as a fraction of it; and, without a target,
   the suite's dense loop stepping ``torch.optim.SGD`` instead of its own
   :class:`repro.optim.MaskedSGD`, so that a reader sees how much of the ratios against
   torch-SGD loops (bare, the peer) the optimizer accounts for;
4. exact global mask selection (``MaskSet.prune_to`` -> ``select_global``) over the prunable
   weights of ResNet-18 (11M) and VGG-19 (20M): time and extra peak memory, each model in a
   fresh subprocess (the peak resident set is reset through /proc/self/clear_refs);
5. data: batches/s of :class:`repro.data.Batches` (augment=True, uint8 tensors on the device)
   against torchvision's DataLoader with the standard transforms over the same images held
   in memory as PIL images (num_workers 0 and 2);
6. (``--only epoch``, meant for a GPU) the epoch time of the suite's loop, ``dense`` and ``pmp``,
   on ResNet-18 / CIFAR-10 at batch 128 with augmentation, per variant of precision,
   ``channels_last`` and ``torch.compile`` (``--variants bf16-cl,bf16-cl-compile``): images/s
   over ``steps`` batches, extrapolated to the 50,000 training images.

Training contenders run without augmentation (all four do the same work; the augmenting
loader is item 5), at fp32 unless ``--precision bf16``, with tracking off.
Results: a table on stdout, ``results/bench/<device>-<date>.json`` and ``results/bench/latest.md``.

The code, one job per module (``tools/bench.py`` is the script entry, which the selection part
also runs by path as a fresh worker process):

- :mod:`bench.specs`: what is measured and against which bar (targets, specs, variants, settings);
- :mod:`bench.timing`: the interleaved, paired timing every part shares;
- :mod:`bench.loops`: the training contenders (the suite's loop, a bare loop, the prune-hooks peer);
- :mod:`bench.training`: parts 1-3 (training throughput) and 6 (epoch time);
- :mod:`bench.selection`: part 4, global mask selection, and its fresh-process worker;
- :mod:`bench.loader`: part 5, the data loader against torchvision's;
- :mod:`bench.machine`: the facts a result records about the machine and the checkout;
- :mod:`bench.report`: the checks table, the markdown and the files written;
- :mod:`bench.runner`: :func:`bench.runner.run`, every requested part into one result;
- :mod:`bench.cli`: the command line.
"""
