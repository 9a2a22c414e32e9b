"""Datasets as uint8 tensors on the training device, served in shuffled, augmented batches.

Each dataset is a :class:`DatasetSpec` in ``SPECS`` (classes, channels, image size,
statistics, whether the CIFAR augmentation applies, how to find and read a copy): adding
one is a spec registered with :func:`register_dataset` plus ``conf/data/NAME.yaml``.
Each dataset is decoded once (the CIFAR JPEG copy is cached as a tensor file), then
batches are slices of device tensors: no ``DataLoader`` over in-memory data. Per-sample
augmentation (pad-4 random crop, horizontal flip) and normalisation run on whole batches.
An epoch's order and augmentation draws come from (seed, epoch) alone, so any epoch can
be replayed exactly after a resume.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(RuntimeError):
    """The dataset cannot be found or read; the message says what to install or where to put files."""


@dataclass
class Split:
    images: torch.Tensor  # uint8, N x C x H x W
    labels: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


#: (root, source, download, cache_dir) -> (the copy read, train split, test split)
Loader = Callable[[Path, str, bool, Path], tuple[str, "Split", "Split"]]


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of the suite knows about a dataset: all of it lives here."""

    name: str
    num_classes: int
    channels: int
    #: image height = width, in pixels
    size: int
    #: per-channel mean and std of the training images, in [0, 1] units
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: whether data.augment=true applies pad-4 random crop + horizontal flip (natural images)
    augment: bool
    #: finds and decodes a copy
    load: Loader
    #: which copy ``load`` would read (a source name) or "missing"; cheap, no decoding
    locate: Callable[[Path, str], str]


SPECS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset; a name already taken is refused."""
    if spec.name in SPECS:
        raise ValueError(f"dataset '{spec.name}' is already registered")
    SPECS[spec.name] = spec
    return spec


@dataclass
class Dataset:
    name: str
    #: which copy was read: official | jpeg | debian
    source: str
    train: Split
    test: Split
    val: Split | None = None

    @property
    def spec(self) -> DatasetSpec:
        return SPECS[self.name]

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]


# ----------------------------------------------------------------------------- reading


#: IDX type byte 0x08: unsigned bytes, the only type MNIST-format files use
IDX_UBYTE = 0x08
#: the shape of one item of each MNIST-format file (28x28 images, scalar labels)
IDX_ITEM_SHAPE = {"images": (28, 28), "labels": ()}


def _bad_file(path: Path, what: str) -> DataError:
    return DataError(f"{path} {what}: delete it and copy or download it again")


def _idx_dims(path: Path, head: bytes) -> list[int]:
    """The dimensions an IDX header declares; a file that is not IDX ubyte is refused by name."""
    if len(head) < 4 or head[:3] != bytes((0, 0, IDX_UBYTE)) or not 1 <= head[3] <= 4 or len(head) < 4 + 4 * head[3]:
        raise _bad_file(path, f"is not an IDX ubyte file (first bytes {head[:4].hex() or 'none'}, expected 000008 "
                              "and a dimension count)")
    return [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(head[3])]


def _check_idx_size(path: Path, dims: list[int], actual: int) -> None:
    expected = 4 + 4 * len(dims) + int(np.prod(dims))
    if actual != expected:
        state = "is truncated" if actual < expected else "is longer than its header says"
        raise _bad_file(path, f"{state}: its header declares shape {tuple(dims)}, {expected} bytes, and it holds "
                              f"{actual} bytes")


def check_idx(path: Path) -> None:
    """Refuse a truncated or foreign IDX file before any run exists. Cheap: an uncompressed file
    by its header and size; a gzipped one by its header and gzip's recorded length, and fully
    decompressed only when that disagrees."""
    if path.suffix != ".gz":
        with open(path, "rb") as f:
            head = f.read(20)
        _check_idx_size(path, _idx_dims(path, head), path.stat().st_size)
        return
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 4, 0))
        recorded = int.from_bytes(f.read(4), "little")  # gzip's ISIZE: the length mod 2**32
    head = _gunzip(path, 20)
    dims = _idx_dims(path, head)
    expected = 4 + 4 * len(dims) + int(np.prod(dims))
    if recorded != expected % 2**32:
        _check_idx_size(path, dims, len(_gunzip(path)))


def _gunzip(path: Path, size: int = -1) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read(size)
    except (OSError, EOFError) as exc:
        raise _bad_file(path, f"cannot be decompressed ({exc})") from None


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not; a truncated or foreign file is refused by name."""
    data = _gunzip(path) if path.suffix == ".gz" else path.read_bytes()
    dims = _idx_dims(path, data[:20])
    _check_idx_size(path, dims, len(data))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def _check_pair(img_path: Path, images: np.ndarray, lbl_path: Path, labels: np.ndarray) -> None:
    """Images must be N x 28 x 28 and labels N: a file from another dataset or split is refused."""
    for path, array, kind in ((img_path, images, "images"), (lbl_path, labels, "labels")):
        if array.shape[1:] != IDX_ITEM_SHAPE[kind]:
            expected = str(("N", *IDX_ITEM_SHAPE[kind])).replace("'", "")
            raise _bad_file(path, f"holds {kind} of shape {array.shape}, expected {expected}")
    if len(images) != len(labels):
        raise DataError(f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels: "
                        "the two files come from different copies; copy or download both again")


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_folder(folder: Path) -> tuple[Split, Split] | None:
    found = {k: [_find_idx(folder, s) for s in stems] for k, stems in IDX_FILES.items()}
    if any(p is None for paths in found.values() for p in paths):
        return None
    splits = []
    for key in ("train", "test"):
        img_path, lbl_path = found[key]
        images, labels = _read_idx(img_path), _read_idx(lbl_path)
        _check_pair(img_path, images, lbl_path, labels)
        splits.append(Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))))
    return splits[0], splits[1]


def _try_download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    log.info("downloading %s into %s", name, root)
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _load_mnist_like(name: str, root: Path, source: str, download: bool) -> tuple[str, Split, Split]:
    """MNIST or Fashion-MNIST from the IDX files (torchvision's layout, or Debian's package)."""
    folder = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
    if source in ("auto", "official"):
        got = _read_idx_folder(folder)
        if got is not None:
            return "official", *got
    if name == "fashion_mnist" and source in ("auto", "debian"):
        got = _read_idx_folder(DEBIAN_FASHION_MNIST)
        if got is not None:
            return "debian", *got
    if download and source in ("auto", "official"):
        try:
            _try_download(name, root)
            got = _read_idx_folder(folder)
            if got is not None:
                return "official", *got
        except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
            log.warning("download of %s failed: %s", name, exc)
    hint = (
        "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or put the IDX files in "
        if name == "fashion_mnist"
        else "put the four MNIST IDX files in "
    )
    raise DataError(f"{name} not found (source={source}): {hint}{folder} or set data.root / REPRO_DATA_DIR")


def _decode_image_folder(folder: Path) -> Split:
    """Decode an ImageFolder tree of JPEG/PNG files (classes sorted by name) into uint8 tensors."""
    from torchvision.io import ImageReadMode, decode_image

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    images, labels = [], []
    for label, cls in enumerate(classes):
        for file in sorted((folder / cls).iterdir()):
            raw = torch.from_numpy(np.fromfile(file, dtype=np.uint8))
            images.append(decode_image(raw, mode=ImageReadMode.RGB))
            labels.append(label)
    return Split(torch.stack(images), torch.tensor(labels, dtype=torch.int64))


def _cached(cache_dir: Path, key: str, make) -> tuple[Split, Split]:
    """Decode once: keep the decoded tensors in ``cache_dir`` keyed by the source path."""
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    path = cache_dir / f"{digest}.pt"
    if path.is_file():
        blob = torch.load(path)
        return Split(*blob["train"]), Split(*blob["test"])
    train, test = make()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"key": key, "train": (train.images, train.labels), "test": (test.images, test.labels)}, tmp)
    os.replace(tmp, path)
    return train, test


def _load_cifar10(root: Path, source: str, download: bool, cache_dir: Path) -> tuple[str, Split, Split]:
    official = root / "cifar-10-batches-py"

    def read_official() -> tuple[Split, Split]:
        import torchvision.datasets as tvd

        out = []
        for train in (True, False):
            ds = tvd.CIFAR10(str(root), train=train, download=False)
            out.append(Split(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)))
        return out[0], out[1]

    if source in ("auto", "official") and official.is_dir():
        return "official", *read_official()
    jpeg = root / "cifar10-jpeg"
    if source in ("auto", "jpeg") and (jpeg / "train").is_dir() and (jpeg / "test").is_dir():
        train, test = _cached(
            cache_dir,
            f"cifar10-jpeg:{jpeg.resolve()}",
            lambda: (_decode_image_folder(jpeg / "train"), _decode_image_folder(jpeg / "test")),
        )
        return "jpeg", train, test
    if download and source in ("auto", "official"):
        try:
            _try_download("cifar10", root)
            return "official", *read_official()
        except Exception as exc:  # noqa: BLE001
            log.warning("download of cifar10 failed: %s", exc)
    raise DataError(
        f"cifar10 not found (source={source}): put torchvision's cifar-10-batches-py or the JPEG copy "
        f"cifar10-jpeg/{{train,test}} under {root}, or set data.root / REPRO_DATA_DIR"
    )


def _locate_mnist_like(name: str, root: Path, source: str) -> str:
    folder = root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw"
    stems = [s for pair in IDX_FILES.values() for s in pair]
    for used, where in (("official", folder), ("debian", DEBIAN_FASHION_MNIST)):
        if used == "debian" and name != "fashion_mnist" or source not in ("auto", used):
            continue
        files = [_find_idx(where, s) for s in stems]
        if all(files):
            for path in files:
                check_idx(path)  # a truncated copy is refused here, before any run exists
            return used
    return "missing"


def _locate_cifar10(root: Path, source: str) -> str:
    if source in ("auto", "official") and (root / "cifar-10-batches-py").is_dir():
        return "official"
    if source in ("auto", "jpeg") and (root / "cifar10-jpeg" / "train").is_dir():
        return "jpeg"
    return "missing"


# ----------------------------------------------------------------------------- CIFAR-100

CIFAR100_FOLDER = "cifar-100-python"


def _read_cifar100_file(path: Path) -> Split:
    """One pickle of torchvision's cifar-100-python layout: b'data' (N x 3072 uint8, channel-major
    32x32 planes) and b'fine_labels' (the 100 classes). Read directly rather than through
    torchvision's CIFAR100, which refuses any file whose MD5 is not the published one."""
    try:
        with open(path, "rb") as f:
            blob = pickle.load(f, encoding="bytes")
        data = np.asarray(blob[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(blob[b"fine_labels"], dtype=np.int64)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        raise _bad_file(path, f"is not a CIFAR-100 python pickle ({exc})") from None
    if len(data) != len(labels):
        raise _bad_file(path, f"holds {len(data)} images but {len(labels)} labels")
    return Split(torch.from_numpy(data.copy()), torch.from_numpy(labels))


def _locate_cifar100(root: Path, source: str) -> str:
    folder = root / CIFAR100_FOLDER
    if source in ("auto", "official") and (folder / "train").is_file() and (folder / "test").is_file():
        return "official"
    return "missing"


def _load_cifar100(root: Path, source: str, download: bool, cache_dir: Path) -> tuple[str, Split, Split]:
    if _locate_cifar100(root, source) == "missing" and download and source in ("auto", "official"):
        try:
            import torchvision.datasets as tvd

            for train in (True, False):
                tvd.CIFAR100(str(root), train=train, download=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
            log.warning("download of cifar100 failed: %s", exc)
    if _locate_cifar100(root, source) == "missing":
        raise DataError(f"cifar100 not found (source={source}): put torchvision's {CIFAR100_FOLDER}/{{train,test}} "
                        f"under {root}, or set data.root / REPRO_DATA_DIR")
    folder = root / CIFAR100_FOLDER
    return "official", _read_cifar100_file(folder / "train"), _read_cifar100_file(folder / "test")


# ----------------------------------------------------------------------------- the registry

for _spec in (
    DatasetSpec("mnist", 10, 1, 28, (0.1307,), (0.3081,), augment=False,
                load=lambda root, source, download, cache: _load_mnist_like("mnist", root, source, download),
                locate=lambda root, source: _locate_mnist_like("mnist", root, source)),
    DatasetSpec("fashion_mnist", 10, 1, 28, (0.2860,), (0.3530,), augment=False,
                load=lambda root, source, download, cache: _load_mnist_like("fashion_mnist", root, source, download),
                locate=lambda root, source: _locate_mnist_like("fashion_mnist", root, source)),
    DatasetSpec("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), augment=True,
                load=_load_cifar10, locate=_locate_cifar10),
    # statistics of the 50,000 training images (the values quoted with torchvision's CIFAR-100 recipes)
    DatasetSpec("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), augment=True,
                load=_load_cifar100, locate=_locate_cifar100),
):
    register_dataset(_spec)


def names() -> tuple[str, ...]:
    """The datasets ``load`` knows."""
    return tuple(SPECS)


def unknown_dataset(name: str) -> str:
    """The one-line refusal of a dataset name ``load`` does not know."""
    return f"unknown dataset '{name}': choose {', '.join(SPECS)}"


def locate(name: str, root: str | Path, source: str = "auto") -> str:
    """Which copy ``load`` would read (official | jpeg | debian), or "missing"; cheap, no decoding."""
    if name not in SPECS:
        return "missing"
    return SPECS[name].locate(Path(root).expanduser(), source)


def _subset(split: Split, n: int) -> Split:
    """A fixed random subset of ``n`` samples (seed 1, in original order): not the first n, since
    some copies (the CIFAR JPEG tree) are stored class by class."""
    if n >= len(split):
        return split
    keep = torch.randperm(len(split), generator=torch.Generator().manual_seed(1))[:n].sort().values
    return Split(split.images[keep], split.labels[keep])


def load(
    name: str,
    root: str | Path,
    *,
    source: str = "auto",
    val_size: int = 0,
    download: bool = True,
    cache_dir: str | Path = ".cache/repro",
    train_subset: int = 0,
    test_subset: int = 0,
) -> Dataset:
    """Find ``name`` under ``root`` (or the Debian location), decode it, carve a validation split."""
    root = Path(root).expanduser()
    if name not in SPECS:
        raise DataError(unknown_dataset(name))
    used, train, test = SPECS[name].load(root, source, download, Path(cache_dir))
    val = None
    if val_size:
        if val_size >= len(train):
            raise DataError(f"data.val_size={val_size} leaves no training data: use fewer than {len(train)}")
        # A fixed split (seed 0), the same for every run and seed, so validation numbers compare.
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        val = Split(train.images[order[:val_size]], train.labels[order[:val_size]])
        keep = order[val_size:].sort().values
        train = Split(train.images[keep], train.labels[keep])
    if train_subset:
        train = _subset(train, train_subset)
    if test_subset:
        test = _subset(test, test_subset)
    return Dataset(name=name, source=used, train=train, test=test, val=val)


# ----------------------------------------------------------------------------- batching


class Normalizer:
    """uint8 images -> normalised float32, as one fused multiply-add per channel."""

    def __init__(self, name: str, device: torch.device) -> None:
        spec = SPECS[name]
        mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (spec.mean, spec.std))
        self.scale = 1.0 / (255.0 * std)
        self.shift = -mean / std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, images.float(), self.scale)


def random_crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Pad by ``pad`` with zeros, crop back at per-sample offsets (dy, dx), flip where ``flip``."""
    b, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = dy.view(b, 1) + torch.arange(h, device=images.device)
    j = torch.arange(w, device=images.device)
    cols = dx.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - j, j)
    # One gather over each padded image's flat pixels (shared by its channels): several times
    # faster than four-tensor advanced indexing on CPU, and the same result.
    index = (rows.view(b, h, 1) * (w + 2 * pad) + cols.view(b, 1, w)).view(b, 1, h * w)
    return padded.reshape(b, c, -1).gather(2, index.expand(b, c, h * w)).view(b, c, h, w)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The RNG of one epoch: a pure function of (seed, epoch), so epochs replay after resume."""
    return torch.Generator().manual_seed((seed + 1) * 1_000_003 + epoch)


class Batches:
    """Shuffled training batches of a Split on the device, augmented per sample when asked."""

    def __init__(self, split: Split, batch_size: int, normalize: Normalizer, *, augment: bool, pad: int = 4) -> None:
        self.split = split
        self.batch_size = batch_size
        self.normalize = normalize
        self.augment = augment
        self.pad = pad

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def epoch(self, seed: int, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one epoch, from batch index ``start`` on (for mid-epoch resume)."""
        n = len(self.split)
        g = epoch_generator(seed, epoch)
        device = self.split.images.device
        order = torch.randperm(n, generator=g).to(device, non_blocking=True)
        if self.augment:
            shifts = torch.randint(0, 2 * self.pad + 1, (2, n), generator=g).to(device, non_blocking=True)
            flips = (torch.rand(n, generator=g) < 0.5).to(device, non_blocking=True)
        for i in range(start, len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            images = self.split.images[idx]
            if self.augment:
                images = random_crop_flip(images, shifts[0, idx], shifts[1, idx], flips[idx], self.pad)
            yield self.normalize(images), self.split.labels[idx]


def eval_batches(split: Split, batch_size: int, normalize: Normalizer) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in order, normalised, never augmented."""
    for i in range(0, len(split), batch_size):
        yield normalize(split.images[i : i + batch_size]), split.labels[i : i + batch_size]
