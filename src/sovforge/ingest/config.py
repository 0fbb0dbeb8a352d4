"""Config of the `ingest` stage: `sovforge ingest INPUT... --out DIR` or the `ingest:` section of a recipe.

Every threshold of every step lives here, with what it does; unknown keys are errors (StrictModel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sovforge._config_base import StrictModel
from sovforge.classification import parse_level

# Lines that are site furniture rather than content (matched on short lines only, case-insensitive).
DEFAULT_BOILERPLATE = [
    r"all rights reserved",
    r"^copyright\b",
    r"^©",
    r"무단\s*전재",
    r"재배포\s*금지",
    r"^(?:home|menu|login|log in|sign in|sign up|share|print|top|skip to (?:main )?content)$",
    r"cookies?\b.*\b(?:accept|policy|consent)",
    r"enable javascript",
    r"^this page intentionally left blank\.?$",
    r"^(?:이\s*)?(?:면|페이지)은?\s*의도적으로\s*비워\s*둔?",
    r"^(?:로그인|회원가입|사이트맵|개인정보\s*처리\s*방침|이용\s*약관|본문\s*바로\s*가기|맨\s*위로)$",
]


class IngestConfig(StrictModel):
    """`sovforge ingest`: documents → screened, deduplicated, classified corpus."""

    inputs: list[Path] = Field(default_factory=list)
    """Files or directories to ingest (directories are walked recursively; hidden files are skipped)."""
    max_classification: str = "UNCLASSIFIED"
    """Documents marked above this level are quarantined, never trained on; those at or below are labelled."""
    tokenizer: Path | None = None
    """Tokenizer (a model/base artifact dir or tokenizer dir) to pack `packed/<split>.npy` with; none: no packing.
    In a recipe with a `base` stage, the base model's tokenizer is used when this is unset."""

    # ---------------------------------------------------------------- execution
    workers: int = Field(1, ge=1)
    """Processes that read, screen and filter documents in parallel (datatrove tasks running at once)."""
    tasks: int | None = Field(None, ge=1)
    """How many shards the input files are split into (datatrove tasks); default: `workers`."""
    executor: Literal["local", "slurm", "ray"] = "local"
    """datatrove executor: `local` (processes on this machine), `slurm` (sbatch job arrays), `ray` (a Ray cluster)."""
    executor_options: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for datatrove's executor, e.g. {partition: cpu, time: "04:00:00"} for slurm or
    {cpus_per_task: 2} for ray."""
    progress: bool = True
    """Show a progress bar over the input files."""

    # ---------------------------------------------------------------- readers
    max_file_mb: float = Field(100.0, gt=0)
    """Files larger than this are quarantined as `too_large` without being read (raise it to stream bigger ones)."""
    max_document_chars: int = Field(1_000_000, ge=1000)
    """Longer texts are split at paragraph boundaries into parts, each its own document (`<id>-pNNNN`); text files
    are read in chunks, so memory stays bounded by this, not by the file size."""
    max_unzipped_mb: float = Field(256.0, gt=0)
    """DOCX/HWPX whose members declare more uncompressed bytes than this are quarantined (`unreadable:zip_bomb`)."""
    max_zip_ratio: float = Field(200.0, gt=1)
    """...as are those with a member compressed more than this many times (real documents stay under ~30)."""
    jsonl_text_field: str = "text"
    """Field of a JSONL record that holds its text."""
    jsonl_title_field: str = "title"
    """Field of a JSONL record that holds its title (optional)."""
    jsonl_classification_field: str = "classification"
    """Field of a JSONL record that declares its classification (optional; the higher of it and any marking wins)."""

    # ---------------------------------------------------------------- normalise
    fold_width: bool = True
    """Fold full-width ASCII (ＡＢＣ１２３（）) and half-width Hangul/Katakana to their usual forms; circled numbers
    and Roman numerals (①, Ⅱ) are kept, since statutes and markings use them."""
    join_lines: list[str] = Field(default_factory=lambda: ["pdf", "html"])
    """Formats whose wrapped lines / split paragraphs are re-joined and de-hyphenated (PDF-converted text)."""

    # ---------------------------------------------------------------- language
    languages: list[str] = Field(default_factory=lambda: ["ko", "en"])
    """ISO 639-1 codes lingua may choose between; a document whose main language is none of them is dropped."""
    langid_chunk_chars: int = Field(400, ge=50)
    """Paragraphs are grouped into chunks of about this many characters; each chunk gets one language."""
    langid_max_chunks: int = Field(64, ge=1)
    """At most this many chunks (evenly spread) are classified per document; the shares are over their characters."""

    # ---------------------------------------------------------------- quality
    min_words: int = Field(20, ge=0)
    """Fewer words than this → `too_short`. Korean words are Kiwi morphemes (not whitespace tokens)."""
    max_symbol_digit_share: float = Field(0.6, ge=0, le=1)
    """More than this share of non-space characters being digits or symbols → `symbol_heavy`."""
    dup_line_frac: float | None = 0.3
    """Gopher: share of lines that repeat an earlier line above this → `dup_line_frac` (None: off)."""
    dup_para_frac: float | None = 0.3
    """Gopher: share of paragraphs that repeat an earlier one above this → `dup_para_frac`."""
    dup_line_char_frac: float | None = 0.2
    """Gopher: share of characters in repeated lines above this → `dup_line_char_frac`."""
    dup_para_char_frac: float | None = 0.2
    """Gopher: share of characters in repeated paragraphs above this → `dup_para_char_frac`."""
    top_ngram_fracs: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})
    """Gopher: n → the most frequent word n-gram may cover at most this share of characters (`top_<n>_gram`)."""
    dup_ngram_fracs: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})
    """Gopher: n → characters inside repeated word n-grams may cover at most this share (`dup_<n>_gram`)."""
    repetition_min_words: int = Field(100, ge=0)
    """Shorter documents skip the repetition rules: a log that repeats an entry or a banner at top and bottom is
    normal there, and fractions over a handful of lines mean little."""
    korean_ngram_scale: int = Field(2, ge=1)
    """A Korean eojeol is about two morphemes, so Gopher's word n-grams become n×this morpheme n-grams."""
    quality_sample_chars: int = Field(10_000, ge=0)
    """Word counts and n-gram checks run on a sample of this many characters (start, middle, end) and are scaled
    to the document; Kiwi runs at ~20-50k chars/s, so this is what keeps big statutes fast. 0: whole text."""
    boilerplate_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_BOILERPLATE))
    """Regexes (case-insensitive) for short lines that are site furniture; such lines are removed."""
    boilerplate_max_line_chars: int = Field(120, ge=10)
    """Only lines up to this long can be boilerplate, so prose that mentions "copyright" survives."""
    max_boilerplate_share: float = Field(0.5, ge=0, le=1)
    """A document whose removed boilerplate exceeds this share of its characters → `boilerplate`."""

    # ---------------------------------------------------------------- dedup
    dedup_exact: bool = True
    """Drop documents whose normalised text (case, spacing, punctuation folded) hashes equal an earlier one's."""
    dedup_near: bool = True
    """Drop near-duplicates found by MinHash LSH over character shingles (works for Korean without a tokenizer)."""
    minhash_threshold: float = Field(0.7, gt=0, lt=1)
    """Estimated Jaccard similarity of shingle sets at or above which two documents are near-duplicates."""
    minhash_num_perm: int = Field(128, ge=16)
    """MinHash permutations (signature length)."""
    shingle_chars: int = Field(5, ge=2)
    """Character n-gram length of the shingles."""

    # ---------------------------------------------------------------- screening / quarantine
    quarantine_text: bool = True
    """Keep the (PII-redacted) text of documents dropped for quality or duplication in quarantine, for review.
    Never kept for documents above the ceiling or files that could not be read."""

    # ---------------------------------------------------------------- split / canaries
    val_share: float = Field(0.05, ge=0, lt=1)
    """Share of documents (by a hash of their id, so deterministic) in the validation split."""
    min_validation_documents: int = Field(1, ge=0)
    """At least this many documents go to validation when val_share > 0 and there are enough documents."""
    split_salt: str = ""
    """Mixed into the split hash; change it to draw a different (still deterministic) validation set."""
    canaries: int = Field(0, ge=0)
    """Random canary sentences to plant into training documents (for evaluate's memorisation probe)."""
    canary_repeats: int = Field(1, ge=1)
    """How many times each canary is planted."""
    canary_seed: int = 0
    """Seed of the canary strings and of where they are planted."""

    @field_validator("max_classification")
    @classmethod
    def _level(cls, value: str) -> str:
        return str(parse_level(value))

    @field_validator("languages")
    @classmethod
    def _languages(cls, codes: list[str]) -> list[str]:
        from lingua import IsoCode639_1  # a Rust extension: imports in ~10 ms, no models loaded

        cleaned = [code.strip().lower() for code in codes]
        unknown = [code for code in cleaned if not hasattr(IsoCode639_1, code.upper())]
        if unknown or not cleaned:
            raise ValueError(f"unknown ISO 639-1 language code(s) {unknown or codes}; e.g. ko, en, ja, zh")
        return cleaned

    @field_validator("join_lines")
    @classmethod
    def _formats(cls, formats: list[str]) -> list[str]:
        from sovforge.ingest.readers import FORMAT_NAMES

        unknown = sorted(set(formats) - set(FORMAT_NAMES))
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; formats are {sorted(FORMAT_NAMES)}")
        return formats

    @model_validator(mode="after")
    def _ngram_sizes(self) -> IngestConfig:
        for name in ("top_ngram_fracs", "dup_ngram_fracs"):
            if any(n < 1 for n in getattr(self, name)):
                raise ValueError(f"{name}: n-gram sizes must be >= 1")
        return self
