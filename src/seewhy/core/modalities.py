"""The inputs of a multimodal model beside its image: text and tabular features (SPEC 3
``[inputs]``).

A card's ``[inputs]`` table says which ``forward`` argument takes what::

    [inputs]
    image = "pixel_values"
    text = { args = ["input_ids", "attention_mask"], tokenizer = "path/or/name",
             max_length = 64, embedding = "auto" }
    tabular = { arg = "features", columns = ["sqft_living", "grade"], mean = [..], std = [..] }

A batch (:class:`~seewhy.core.inputs.Inputs`) of such a model holds the entries ``image``,
``input_ids`` / ``attention_mask`` (/ ``token_type_ids``: the text spec's ``args`` in that
order) and ``tabular``; each goes to ``forward`` under its argument name.

Text is attributed at the output of its embedding layer (``embedding``: ``auto`` finds
``get_input_embeddings()`` on the model or a submodule; else a module name): the methods add
an entry ``text`` ``[B, T, D]`` (that layer's output on the batch's token ids) and, while the
model runs, a temporary forward hook on the layer returns that entry instead of its own
output. The model's forward and weights are untouched, and the hook is gone after the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seewhy.core.errors import UsageError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor, nn

TEXT = "text"
"""The attributed text entry: the embedding layer's output ``[B, T, D]``."""
TABULAR = "tabular"
"""The tabular entry: normalised features ``[B, F]``."""
TEXT_ENTRIES = ("input_ids", "attention_mask", "token_type_ids")
"""The batch entries that carry a text, in the order of the text spec's ``args``."""


def _check_table(table: Any, spec: type, where: str, what: str, example: str) -> None:
    """``[inputs] <what>`` is a table whose keys are ``spec``'s public fields; else a one-line
    error with an example, or the closest key."""
    if not isinstance(table, Mapping):
        raise UsageError(f"{where}: [inputs] {what} should be a table, e.g. {what} = {example}")
    known = [f.name for f in dataclasses.fields(spec) if not f.name.startswith("_")]
    for key in table:
        if key not in known:
            raise UsageError(
                f"{where}: [inputs] {what} has an unknown key '{key}'"
                f"{did_you_mean(key, known)} Known keys: {', '.join(known)}"
            )


@dataclass
class TextSpec:
    """How a model takes text (the card's ``[inputs] text``).

    Attributes:
        args: forward's argument names for the token ids, the attention mask and (optionally)
            the token type ids, in that order.
        tokenizer: a local folder or a name for transformers' ``AutoTokenizer``.
        max_length: tokens per text (special tokens included); longer texts are truncated,
            shorter ones padded to it, so every text of a run has the same length.
        embedding: ``auto`` (``get_input_embeddings()`` on the model or a submodule) or the
            name of the module whose output is attributed.
    """

    args: list[str] = dataclasses.field(default_factory=lambda: ["input_ids", "attention_mask"])
    tokenizer: str | None = None
    max_length: int = 64
    embedding: str = "auto"
    _tokenizer: Any = dataclasses.field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, table: Any, where: str, base: Path | None = None) -> TextSpec:
        if isinstance(table, str):
            table = {"tokenizer": table}
        _check_table(
            table,
            cls,
            where,
            "text",
            '{ args = ["input_ids", "attention_mask"], tokenizer = "path" }',
        )
        args = table.get("args", ["input_ids", "attention_mask"])
        if (
            not isinstance(args, list)
            or not 1 <= len(args) <= len(TEXT_ENTRIES)
            or not all(isinstance(a, str) and a for a in args)
        ):
            raise UsageError(
                f"{where}: [inputs] text args = {args!r} should list forward's argument names "
                'for the token ids, attention mask (and token type ids), e.g. ["input_ids", '
                '"attention_mask"]'
            )
        n = table.get("max_length", 64)
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise UsageError(f"{where}: [inputs] text max_length = {n!r} should be an integer >= 2")
        tok = table.get("tokenizer")
        if tok is not None and not isinstance(tok, str):
            raise UsageError(f"{where}: [inputs] text tokenizer = {tok!r} should be a path or name")
        if tok is not None and base is not None and (base / tok).exists():
            tok = str(base / tok)
        emb = table.get("embedding", "auto")
        if not isinstance(emb, str) or not emb:
            raise UsageError(f"{where}: [inputs] text embedding = {emb!r} should be a module name")
        return cls(args=list(args), tokenizer=tok, max_length=n, embedding=emb)

    def entry_argument(self, entry: str) -> str | None:
        """The forward argument of a batch entry (``input_ids`` -> ``args[0]`` ...)."""
        if entry in TEXT_ENTRIES:
            i = TEXT_ENTRIES.index(entry)
            return self.args[i] if i < len(self.args) else None
        return None

    @property
    def entries(self) -> tuple[str, ...]:
        return TEXT_ENTRIES[: len(self.args)]

    # -- the tokenizer ----------------------------------------------------------------------
    def load_tokenizer(self) -> Any:
        """transformers' ``AutoTokenizer`` for :attr:`tokenizer` (loaded once, offline)."""
        if self._tokenizer is not None:
            return self._tokenizer
        if not self.tokenizer:
            raise UsageError(
                "this model takes text but its card names no tokenizer; add tokenizer = "
                '"path/to/tokenizer" to [inputs] text'
            )
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UsageError("text inputs need transformers: pip install 'seewhy[text]'") from None
        path = Path(self.tokenizer)
        looks_local = path.is_absolute() or self.tokenizer.startswith(".") or path.exists()
        if looks_local and not path.exists():
            raise UsageError(
                f"tokenizer {self.tokenizer} does not exist; fix [inputs] text tokenizer in the "
                "card (a folder with tokenizer.json / vocab.txt)"
            )
        try:
            tok = AutoTokenizer.from_pretrained(self.tokenizer, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"tokenizer '{self.tokenizer}' could not be loaded offline ({first}); give the "
                "folder a saved tokenizer lives in"
            ) from None
        if tok.pad_token is None:
            raise UsageError(
                f"tokenizer '{self.tokenizer}' has no pad token, which seewhy needs to pad texts "
                "to max_length and as the text baseline; save the tokenizer with one (e.g. "
                "tokenizer.pad_token = tokenizer.eos_token, as the model was trained)"
            )
        self._tokenizer = tok
        return self._tokenizer

    def encode(self, texts: Sequence[str]) -> tuple[dict[str, Tensor], list[bool]]:
        """The batch entries for ``texts`` (padded and truncated to :attr:`max_length`) and,
        per text, whether it was truncated."""
        tok = self.load_tokenizer()
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise UsageError(f"text {i} is a {type(t).__name__}; expected a string")
        enc = tok(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        full = tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        truncated = [len(ids) > self.max_length for ids in full]
        out = {}
        for entry, key in zip(
            self.entries, ("input_ids", "attention_mask", "token_type_ids"), strict=False
        ):
            if key not in enc:
                raise UsageError(f"the tokenizer gives no '{key}' for text arg '{entry}'")
            out[entry] = enc[key]
        return out, truncated

    def special_mask(self, ids: Tensor, mask: Tensor | None) -> Tensor:
        """``[B, T]`` bool: special tokens ([CLS], [SEP], [PAD] ...) and padding."""
        import torch

        tok = self.load_tokenizer()
        ids_special = set(tok.all_special_ids) - {tok.unk_token_id}  # [UNK] stands for a word
        special = torch.isin(ids, torch.tensor(sorted(ids_special), device=ids.device))
        if mask is not None:
            special |= mask == 0
        return special

    def pad_id(self) -> int:
        return int(self.load_tokenizer().pad_token_id)  # load_tokenizer refuses a missing one

    def padded(self, ids: Tensor, remove: Tensor) -> Tensor:
        """``ids`` with the tokens where ``remove`` is True replaced by [PAD] (the text
        baseline: the position and its attention are kept)."""
        return ids.masked_fill(remove.to(ids.device), self.pad_id())

    # -- the embedding layer ----------------------------------------------------------------
    def embedding_name(self, module: nn.Module) -> str:
        """The name of the embedding module in ``module`` (``auto``: found as the module that
        ``get_input_embeddings()`` returns on the model or its first submodule that has it)."""
        names = {id(m): n for n, m in module.named_modules()}
        if self.embedding != "auto":
            if self.embedding not in dict(module.named_modules()):
                options = [n for n, m in module.named_modules() if n]
                raise UsageError(
                    f"embedding layer '{self.embedding}' is not a module of the model"
                    f"{did_you_mean(self.embedding, options)} Fix [inputs] text embedding "
                    "(list the modules with: seewhy layers MODEL --all)"
                )
            return self.embedding
        for _, m in module.named_modules():
            get = getattr(m, "get_input_embeddings", None)
            if callable(get):
                try:
                    emb = get()
                except (NotImplementedError, AttributeError):
                    continue
                if emb is not None and id(emb) in names:
                    return names[id(emb)]
        from torch import nn as tnn

        found = [n for n, m in module.named_modules() if isinstance(m, tnn.Embedding)]
        if len(found) == 1:
            return found[0]
        raise UsageError(
            "no text embedding layer found automatically (no get_input_embeddings(), and "
            f"{len(found)} nn.Embedding modules: {', '.join(found[:5]) or 'none'}); name it with "
            '[inputs] text embedding = "module.name"'
        )


@dataclass
class TabularSpec:
    """How a model takes tabular features (the card's ``[inputs] tabular``).

    Attributes:
        arg: forward's argument name for the features ``[B, F]``.
        columns: the manifest columns, in the model's order.
        mean, std: the normalisation the model was trained with (``(value - mean) / std``);
            default 0 and 1.
    """

    arg: str = "features"
    columns: list[str] = dataclasses.field(default_factory=list)
    mean: list[float] | None = None
    std: list[float] | None = None

    @classmethod
    def parse(cls, table: Any, where: str) -> TabularSpec:
        _check_table(table, cls, where, "tabular", '{ arg = "features", columns = ["a", "b"] }')
        cols = table.get("columns", [])
        if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
            raise UsageError(
                f"{where}: [inputs] tabular columns = {cols!r} should list the feature columns"
            )
        spec = cls(arg=str(table.get("arg", "features")), columns=list(cols))
        for key in ("mean", "std"):
            v = table.get(key)
            if v is None:
                continue
            if (
                not isinstance(v, list)
                or len(v) != len(cols)
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
            ):
                raise UsageError(
                    f"{where}: [inputs] tabular {key} should list {len(cols)} numbers, one per "
                    f"column; got {v!r}"
                )
            if key == "std" and any(x <= 0 for x in v):
                raise UsageError(f"{where}: [inputs] tabular std must be > 0; got {v!r}")
            setattr(spec, key, [float(x) for x in v])
        return spec

    def encode(self, rows: Any, labels: Sequence[str] | None = None) -> Tensor:
        """Normalised features ``[B, F]`` (float32) from rows: mappings by column name or
        sequences in column order. Missing columns and non-numbers are one-line errors naming
        the row by its label (``labels[i]``, default ``tabular row i``)."""
        import math

        import torch

        if not self.columns:
            raise UsageError(
                "this model's card lists no tabular columns ([inputs] tabular columns = [...]); "
                "give the features as a normalised tensor [B, F], or name the columns"
            )
        values: list[list[float]] = []
        for i, row in enumerate(rows):
            name = labels[i] if labels is not None else f"tabular row {i}"
            if isinstance(row, Mapping):
                missing = [c for c in self.columns if c not in row]
                if missing:
                    raise UsageError(
                        f"{name} has no column {', '.join(repr(c) for c in missing)}"
                        f"{did_you_mean(missing[0], [str(k) for k in row])} The card's "
                        f"[inputs] tabular columns are {', '.join(self.columns)}"
                    )
                cells = [row[c] for c in self.columns]
            else:
                cells = list(row)
                if len(cells) != len(self.columns):
                    raise UsageError(
                        f"{name} has {len(cells)} values; the card's columns are "
                        f"{len(self.columns)}: {', '.join(self.columns)}"
                    )
            out = []
            for c, v in zip(self.columns, cells, strict=True):
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    raise UsageError(
                        f"{name}: column '{c}' = {v!r} is not a number; clean the "
                        "column or drop the row"
                    ) from None
                if not math.isfinite(f):
                    raise UsageError(f"{name}: column '{c}' is {v!r}; give a finite number")
                out.append(f)
            values.append(out)
        x = torch.tensor(values, dtype=torch.float32).reshape(len(values), len(self.columns))
        if self.mean is not None:
            x = x - torch.tensor(self.mean)
        if self.std is not None:
            x = x / torch.tensor(self.std)
        return x

    def decode(self, x: Tensor) -> Tensor:
        """Raw values from normalised features (the inverse of :meth:`encode`'s scaling)."""
        import torch

        out = x.detach().float().cpu()
        if self.std is not None:
            out = out * torch.tensor(self.std)
        if self.mean is not None:
            out = out + torch.tensor(self.mean)
        return out


@dataclass
class Modalities:
    """A model's ``[inputs]``: the image's argument, and the text and tabular specs."""

    image: str = "image"
    text: TextSpec | None = None
    tabular: TabularSpec | None = None
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def parse(
        cls, table: Mapping[str, Any] | None, where: str = "model card", base: Path | None = None
    ) -> Modalities:
        table = dict(table or {})
        known = ("image", "text", "tabular")
        extra: dict[str, str] = {}
        for key, value in table.items():
            if key in known:
                continue
            # another tensor input, passed as it is: name = "arg" or name = { arg = "arg" }
            if isinstance(value, str) and value:
                extra[key] = value
            elif isinstance(value, Mapping) and set(value) == {"arg"} and value["arg"]:
                extra[key] = str(value["arg"])
            else:
                raise UsageError(
                    f"{where}: [inputs] has an unknown key '{key}'{did_you_mean(key, known)} "
                    f'Known keys: {", ".join(known)} (another tensor input is name = "arg")'
                )
        image = table.get("image", "image")
        if isinstance(image, Mapping):
            image = image.get("arg", "image")
        if not isinstance(image, str) or not image:
            raise UsageError(
                f"{where}: [inputs] image = {image!r} should be forward's argument name"
            )
        out = cls(
            image=image,
            text=TextSpec.parse(table["text"], where, base) if "text" in table else None,
            tabular=TabularSpec.parse(table["tabular"], where) if "tabular" in table else None,
            extra=extra,
        )
        entries = ["image", *(out.text.entries if out.text else ()), *extra]
        if out.tabular is not None:
            entries.append(TABULAR)
        seen: dict[str, str] = {}
        for entry in entries:
            arg = out.argument(entry)
            if arg in seen:
                raise UsageError(
                    f"{where}: [inputs] gives forward's argument '{arg}' to both {seen[arg]} and "
                    f"{entry}; each input needs its own argument"
                )
            seen[arg] = entry
        return out

    @property
    def multimodal(self) -> bool:
        return self.text is not None or self.tabular is not None or bool(self.extra)

    def argument(self, entry: str) -> str:
        """Forward's argument name for a batch entry."""
        if entry == "image":
            return self.image
        if entry == TABULAR and self.tabular is not None:
            return self.tabular.arg
        if entry in self.extra:
            return self.extra[entry]
        if self.text is not None:
            arg = self.text.entry_argument(entry)
            if arg is not None:
                return arg
        return entry


_NEW_WORD = ("\u2581", "\u0120")  # sentencepiece's and byte-level BPE's word-start marks


def token_records(
    spec: TextSpec,
    ids: Tensor,
    mask: Tensor | None,
    scores: Tensor,
    abs_scores: Tensor,
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """Per sample, its non-special tokens ``{token, score, abs_score}`` and its words
    ``{word, score, abs_score, tokens}`` (word pieces merged: a WordPiece ``##`` piece joins
    the word before it; with sentencepiece / byte-level BPE tokens, a piece without the
    word-start mark does). Special tokens and padding are left out."""
    tok = spec.load_tokenizer()
    special = spec.special_mask(ids, mask).cpu()
    ids_cpu, s_cpu, a_cpu = (
        ids.cpu(),
        scores.detach().float().cpu(),
        abs_scores.detach().float().cpu(),
    )
    all_tokens: list[list[dict[str, Any]]] = []
    all_words: list[list[dict[str, Any]]] = []
    for row in range(ids_cpu.shape[0]):
        keep = [t for t in range(ids_cpu.shape[1]) if not bool(special[row, t])]
        pieces = tok.convert_ids_to_tokens([int(ids_cpu[row, t]) for t in keep])
        marked = any(str(p).startswith(_NEW_WORD) for p in pieces)
        tokens: list[dict[str, Any]] = [
            {"token": str(p), "score": float(s_cpu[row, t]), "abs_score": float(a_cpu[row, t])}
            for p, t in zip(pieces, keep, strict=True)
        ]
        words: list[dict[str, Any]] = []
        for i, rec in enumerate(tokens):
            piece = str(rec["token"])
            joins = piece.startswith("##") or (marked and i > 0 and not piece.startswith(_NEW_WORD))
            text = piece[2:] if piece.startswith("##") else piece.lstrip("".join(_NEW_WORD))
            if joins and words:
                w = words[-1]
                w["word"] += text
                w["score"] += rec["score"]
                w["abs_score"] += rec["abs_score"]
                w["tokens"].append(piece)
            else:
                words.append(
                    {
                        "word": text,
                        "score": rec["score"],
                        "abs_score": rec["abs_score"],
                        "tokens": [piece],
                    }
                )
        all_tokens.append(tokens)
        all_words.append(words)
    return all_tokens, all_words
