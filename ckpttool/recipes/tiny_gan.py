"""A tiny VITS-like G/D GAN recipe: weight-normed convs, AdamW(0.8, 0.99), ExponentialLR, one step = one epoch.

``recipe`` saves and restores everything (models, optimizers, schedulers, counters): resume is exact.
``vits_style`` saves only what VITS's ``utils.save_checkpoint`` saves (model, iteration, optimizer,
learning_rate) and rebuilds the scheduler on load as VITS does (``ExponentialLR(last_epoch=epoch-2)``, the
interrupted epoch re-run): verify-resume shows how far that drifts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import weight_norm as _legacy_weight_norm

from ckpttool.resume.recipe import LoadedFile, RecipeContext


def weight_norm(module: nn.Module) -> nn.Module:
    """The legacy weight norm VITS and GPT-SoVITS use (weight_g/weight_v keys), without its deprecation noise."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return _legacy_weight_norm(module)


GAMMA = 0.999875
LR = 2e-4


class TinyG(nn.Module):
    """Generator: a conv, one weight-normed transposed conv (upsamples 2x) and a conv to one channel; [B, 4,
    T] -> [B, 1, 2T]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_pre = nn.Conv1d(4, 8, 3, padding=1)
        self.ups = nn.ModuleList([weight_norm(nn.ConvTranspose1d(8, 4, 4, 2, padding=1))])
        self.conv_post = nn.Conv1d(4, 1, 7, padding=3, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` [B, 4, T] -> audio-like [B, 1, 2T] in (-1, 1)."""
        x = nn.functional.leaky_relu(self.conv_pre(z), 0.1)
        x = nn.functional.leaky_relu(self.ups[0](x), 0.1)
        return torch.tanh(self.conv_post(x))


class TinyD(nn.Module):
    """Discriminator: three weight-normed convs (the first strided) on [B, 1, T], a score per position left."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [weight_norm(nn.Conv1d(1, 4, 5, 2, padding=2)), weight_norm(nn.Conv1d(4, 4, 3))]
        )
        self.conv_post = weight_norm(nn.Conv1d(4, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, 1, T] -> scores [B, 1, T']."""
        for c in self.convs:
            x = nn.functional.leaky_relu(c(x), 0.1)
        return self.conv_post(x)


class TinyGAN:
    """The trainer object of the recipe protocol."""

    save_scheduler = True

    def __init__(self, device: torch.device) -> None:
        self.device = device
        torch_state = torch.get_rng_state()
        torch.manual_seed(1234)  # module init draws from the global RNG; put the caller's state back after
        self.net_g, self.net_d = TinyG().to(device), TinyD().to(device)
        torch.set_rng_state(torch_state)
        kw: dict[str, Any] = {"lr": LR, "betas": (0.8, 0.99), "eps": 1e-9}
        self.optim_g = torch.optim.AdamW(self.net_g.parameters(), **kw)
        self.optim_d = torch.optim.AdamW(self.net_d.parameters(), **kw)
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, GAMMA)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, GAMMA)
        self.epoch = 0

    def _batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(10_000 + index)
        z = torch.randn(2, 4, 16, generator=gen)
        real = torch.tanh(torch.randn(2, 1, 32, generator=gen))
        return z.to(self.device), real.to(self.device)

    def train_step(self, index: int) -> None:
        """One least-squares GAN step on the batch seeded by ``index``: D first, then G (adversarial + L1
        loss); both schedulers step and the epoch advances (one step is one epoch)."""
        z, real = self._batch(index)
        fake = self.net_g(z)
        loss_d = ((self.net_d(real) - 1) ** 2).mean() + (self.net_d(fake.detach()) ** 2).mean()
        self.optim_d.zero_grad()
        loss_d.backward()
        self.optim_d.step()
        loss_g = ((self.net_d(fake) - 1) ** 2).mean() + (fake - real).abs().mean()
        self.optim_g.zero_grad()
        loss_g.backward()
        self.optim_g.step()
        self.sched_g.step()
        self.sched_d.step()
        self.epoch += 1

    def save(self, folder: Path) -> list[Path]:
        """Write ``G_<epoch>.pth`` and ``D_<epoch>.pth`` to ``folder``: everything (with the scheduler and
        ``epoch``), or with ``save_scheduler`` False exactly what VITS's ``utils.save_checkpoint`` writes."""
        paths = [folder / f"G_{self.epoch}.pth", folder / f"D_{self.epoch}.pth"]
        for path, net, opt, sched in (
            (paths[0], self.net_g, self.optim_g, self.sched_g),
            (paths[1], self.net_d, self.optim_d, self.sched_d),
        ):
            obj: dict[str, Any]
            if self.save_scheduler:
                obj = {
                    "model": net.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": self.epoch,
                }
            else:  # exactly what VITS's utils.save_checkpoint writes
                obj = {
                    "model": net.state_dict(),
                    "iteration": self.epoch,
                    "optimizer": opt.state_dict(),
                    "learning_rate": LR,
                }
            torch.save(obj, path)
        return paths

    def load(self, files: list[LoadedFile]) -> None:
        """Restore models, optimizers and the epoch from ckpttool's reading of the files (G or D by the network
        ckpttool found in each, else by the file name), schedulers from their saved states; a file without one
        gets the scheduler VITS's train.py rebuilds (``ExponentialLR(last_epoch=epoch-2)``), and the VITS-style
        trainer re-runs the saved epoch."""
        for f in files:
            ckpt = f.root
            named = {"G", "D"} & set(f.roles)  # else a generic layout: its own file names tell
            is_d = "D" in named if named else f.path.name.startswith("D_")
            net, opt = (self.net_d, self.optim_d) if is_d else (self.net_g, self.optim_g)
            _require_fit(f, net, "TinyD" if is_d else "TinyG")
            net.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            self.epoch = int(ckpt["epoch"] if "epoch" in ckpt else ckpt["iteration"])
            if "scheduler" in ckpt:
                (self.sched_d if is_d else self.sched_g).load_state_dict(ckpt["scheduler"])
            else:  # VITS: ExponentialLR(optim, gamma, last_epoch=epoch_str-2), and the epoch is re-run
                sched = torch.optim.lr_scheduler.ExponentialLR(opt, GAMMA, last_epoch=self.epoch - 2)
                if is_d:
                    self.sched_d = sched
                else:
                    self.sched_g = sched
        if not self.save_scheduler:
            self.epoch -= 1

    def state(self) -> dict[str, torch.Tensor]:
        """Both networks' tensors, optimizer moments and group LRs, and the epoch, on the CPU."""
        out: dict[str, torch.Tensor] = {}
        for prefix, net, opt in (("G", self.net_g, self.optim_g), ("D", self.net_d, self.optim_d)):
            for k, v in net.state_dict().items():
                out[f"{prefix}.{k}"] = v.detach().cpu()
            for i, entry in opt.state_dict()["state"].items():
                for k, v in entry.items():
                    out[f"{prefix}.optimizer.{i}.{k}"] = torch.as_tensor(v).detach().cpu()
            out[f"{prefix}.lr"] = torch.tensor([g["lr"] for g in opt.param_groups], dtype=torch.float64)
        out["epoch"] = torch.tensor(self.epoch)
        return out


def _require_fit(f: LoadedFile, net: nn.Module, name: str) -> None:
    """Refuse, in one line (UsageError, exit 2), a file this recipe's tiny networks cannot load: no ``model``
    state dict, no ``optimizer``, no epoch, or tensors of another network."""
    from ckpttool.errors import UsageError

    ckpt = f.root
    why = None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        why = "it has no 'model' state dict"
    elif not isinstance(ckpt.get("optimizer"), dict):
        why = "it has no 'optimizer' state"
    elif "epoch" not in ckpt and "iteration" not in ckpt:
        why = "it records no epoch ('epoch' or 'iteration')"
    else:
        want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in ckpt["model"].items() if isinstance(v, torch.Tensor)}
        missing = sorted(set(want) - set(got))
        shapes = sorted(k for k in want if k in got and want[k] != got[k])
        if missing:
            why = f"its 'model' is not {name}: it lacks {len(missing)} of its tensors, e.g. {missing[0]}"
        elif shapes:
            why = f"its 'model' is not {name}: {shapes[0]} is {list(got[shapes[0]])}, {name} has {list(want[shapes[0]])}"
        elif len(got) != len(want):
            extra = sorted(set(got) - set(want))
            why = f"its 'model' is not {name}: {len(extra)} tensor(s) {name} does not have, e.g. {extra[0]}"
    if why:
        raise UsageError(
            f"recipe ckpttool.recipes.tiny_gan does not fit {f.path.name}: {why}; it resumes only the tiny G/D "
            "GAN it trains itself (ckpttool.recipes.tiny_gan.make_checkpoint); give your own trainer's --recipe"
        )


class VitsStyleGAN(TinyGAN):
    """The same GAN saved and resumed the way VITS does (no scheduler in the files)."""

    save_scheduler = False


def recipe(context: RecipeContext) -> TinyGAN:
    """The ``--recipe ckpttool.recipes.tiny_gan:recipe`` factory: exact resume."""
    return TinyGAN(context.device)


def vits_style(context: RecipeContext) -> TinyGAN:
    """The ``--recipe ckpttool.recipes.tiny_gan:vits_style`` factory: VITS's resume, with its drift."""
    return VitsStyleGAN(context.device)


def make_checkpoint(folder: Path, steps: int = 4) -> list[Path]:
    """The starting point used by the tests and the demo: the recipe trained ``steps`` steps, then saved."""
    trainer = TinyGAN(torch.device("cpu"))
    for i in range(steps):
        trainer.train_step(i)
    return trainer.save(folder)
