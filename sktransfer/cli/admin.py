"""``sktransfer backbones``, ``weights`` and ``cache``: what is on this machine, and its upkeep."""

from __future__ import annotations

from pathlib import Path

from .common import UsageError


def cmd_backbones(args):
    """Print the backbones that have a name, and whether their ImageNet weights are here."""
    from importlib.util import find_spec

    from ..backbones import catalog

    rows = catalog.shipped_rows()
    if rows is None:  # the shipped table is for another torchvision: work it out (slow)
        from ..backbones.building import list_backbones

        rows = list_backbones()
    else:
        rows = catalog.with_status(rows)
    print(f"{'name':22} {'aliases':14} {'source':11} {'blocks':>6} {'features':>8} "
          f"{'input':>5} {'top1':>6}  offline")
    for r in rows:
        print(f"{r['name']:22} {','.join(r['aliases']):14} {r['source']:11} {r['blocks']:>6} "
              f"{r['feature_size']:>8} {r['input_size']:>5} {r['top1']:>6.2f}  "
              f"{'yes' if r['offline'] else 'no'}")
    timm = "installed" if find_spec("timm") else "not installed: pip install 'sktransfer[timm]'"
    print(f"\nAny model of timm's zoo: backbone='timm/<name>' (timm {timm}). Weights that are "
          "not on this machine are\ndownloaded on first use (`sktransfer weights download NAME` "
          "fetches them ahead; SKTRANSFER_OFFLINE=1 forbids it).")


def cmd_weights(args):
    """Download pretrained weights ahead of use, or list those on this machine."""
    from ..backbones import catalog

    if args.action == "list":
        hub = catalog.hub_checkpoint_dir()
        files = sorted(hub.glob("*.pth")) if hub.is_dir() else []
        print(f"torch hub cache {hub}: {len(files)} file(s)")
        for path in files:
            print(f"  {path.name:40} {_size(path.stat().st_size):>10}")
        for row in catalog.with_status(catalog.shipped_rows() or []):
            if row["offline"]:
                print(f"ImageNet weights for {row['name']}: on this machine")
        _list_hf_cache()
        return
    if not args.names:
        raise UsageError("download needs at least one NAME (e.g. mobilenet, "
                         "efficientnet_lite2, timm/convnext_tiny.fb_in22k_ft_in1k)")
    from ..backbones.building import fetch_weights

    for spec in args.names:
        name, _, weights = spec.partition(":")
        path = fetch_weights(name, weights or "imagenet", args.to,
                             progress=not args.quiet)
        print(f"{spec}: {path}")
    if args.to:
        print(f"Copy {args.to} to the other machine: torchvision's .pth files go into "
              "$TORCH_HOME/hub/checkpoints; for timm models point HF_HUB_CACHE at the folder.")


def _list_hf_cache():
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return
    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return
    repos = sorted(r.repo_id for r in info.repos if r.repo_id.startswith("timm/"))
    print(f"Hugging Face cache: {len(repos)} timm model(s)")
    for repo in repos:
        print(f"  {repo}")


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_cache(args):
    """Inspect, prune or clear an activation cache folder (a cache_dir)."""
    from ..extraction.cache import DiskStore
    from ..utils.sizes import parse_bytes

    root = Path(args.directory)
    if not root.is_dir():
        raise FileNotFoundError(f"cache folder not found: {root}")
    store = DiskStore(root)
    if args.action == "info":
        info = store.info()
        print(f"{root}: {info['entries']} entries, {_size(info['bytes'])}")
        for row in info["networks"]:
            d = row["description"] or {}
            what = (f"{d.get('backbone', '?')} ({d.get('weights', '?')}), {d.get('frozen', '?')},"
                    f" {d.get('input', '?')}") if d else "(no description)"
            print(f"  {row['key'][:12]}  {row['entries']:>7} entries  {_size(row['bytes']):>10}"
                  f"  {what}")
    elif args.action == "prune":
        if args.max_bytes is None:
            raise UsageError("prune needs --max-bytes SIZE (e.g. 500M, 2G)")
        result = store.prune(parse_bytes(args.max_bytes))
        print(f"{root}: removed {result['removed']} entries, {_size(result['bytes'])} left")
    else:
        print(f"{root}: removed {store.clear()} entries")
