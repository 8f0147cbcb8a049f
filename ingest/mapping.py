"""Column mapping: how any CRM export's files, headers and values become the canonical tables.

A mapping is a YAML file with one optional section per canonical table:

    opportunities:
      file: sales_pipeline.csv            # name or glob inside the data folder
      columns: {account_id: account}      # canonical column: source header
      values:                             # matched exactly after trimming; "*" = any other value
        outcome: {Won: won, Lost: lost, "*": open}
      date_format: "%Y-%m-%d"             # for every date column, or {close_date: "%d/%m/%Y"}
      scale: {amount: 1000}               # multiplier applied after parsing
      number_format: decimal_comma        # 1.234,5; for every number column, or {amount: decimal_comma}
      defaults: {product: hardware}       # constant for a column the export lacks

    accounts:
      from_opportunities: true            # one account per distinct account_id of the opportunities rows
      columns: {account_id: Account ID, industry: Industry}   # headers of the opportunities file

    accounts:                             # an export with no account column (one deal per row)
      from_opportunities: true
      one_per_opportunity: true           # each opportunity is its own account: account_id is its opportunity_id
      columns: {employees: Number of Employees}

    opportunities:                        # a lead funnel: leads, and a file of won deals
      file: leads.csv
      join:                               # bring columns from another file on a key (left join, unique keys)
        - {file: deals.csv, on: Lead ID, right_on: lead, columns: [Won Date, Deal Amount]}
      columns: {opportunity_id: Lead ID, account_id: Company, created_date: Created, amount: Deal Amount}
      outcome_rule: {won_date: Won Date, lost_after_days: 90}   # derives outcome and close_date

Unmapped source columns pass through under their own names (accounts taken from the opportunities rows keep
only their mapped columns). Presets live in `ingest/presets/`.
"""

from __future__ import annotations

import difflib
import re
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any

import pandas as pd
import pyarrow as pa
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from features.errors import DataError, Problem
from features.schema import TABLES, columns
from ingest.numbers import NUMBER_FORMATS, NumberFormat

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS: tuple[str, ...] = tuple(sorted(path.stem for path in PRESET_DIR.glob("*.yaml")))
DEFAULT_PRESET = "canonical"
CATCH_ALL = "*"
# Mapping keys whose canonical columns must be of one kind.
KIND_OF_KEY: dict[str, str] = {"scale": "number", "date_format": "date", "number_format": "number"}


def _as_text(value: Any) -> Any:
    """YAML turns `2024: x`, `1.5` or a date into numbers and dates; headers and CRM values are text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, date)):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_as_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _inside(file: str) -> str:
    outside = PurePosixPath(file).is_absolute() or PureWindowsPath(file).is_absolute()
    if outside or ".." in PurePosixPath(file.replace("\\", "/")).parts:
        raise ValueError(f"{file!r} points outside the data folder; give a file name or glob inside it")
    return file


class Join(_Strict):
    """Columns brought from a second file on a key: every row of the table keeps its place (a left join); the second
    file holds each key once."""

    file: Text
    on: Text  # the key's header in the table's own file
    right_on: Text | None = None  # the key's header in the joined file (default: the same as `on`)
    columns: list[Text] = []  # headers to bring (default: all but the key)

    _inside_data_folder = field_validator("file")(classmethod(lambda cls, file: _inside(file)))

    @property
    def key(self) -> str:
        return self.right_on or self.on


class OutcomeRule(_Strict):
    """outcome and close_date from a won date: won when it holds a date; lost when it does not and
    `lost_after_days` have passed since created_date by the export's latest date (or `observed_until`); open
    otherwise. close_date is the won date, or the day the opportunity was judged lost."""

    won_date: Text  # the header (in the file or a joined one) of the date a deal was won
    lost_after_days: Annotated[int, Field(gt=0)]
    observed_until: date | None = None  # the day the export was taken; default: its latest created or won date


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _number_format(value: Any) -> Any:
    """One message for a wrong number format (pydantic would give one per member of the union)."""
    allowed = " or ".join(NUMBER_FORMATS)
    if isinstance(value, dict):
        for column, each in value.items():
            if each not in NUMBER_FORMATS:
                raise ValueError(f"{column}: {each!r} is not a number format; use {allowed}")
    elif value is not None and value not in NUMBER_FORMATS:
        raise ValueError(f"{value!r} is not a number format; use {allowed}, or one per column: {{amount: {allowed}}}")
    return value


class TableMapping(_Strict):
    """How one canonical table is found and read; every key is optional."""

    file: Text | None = None
    columns: dict[str, Text] = {}
    values: dict[str, dict[Text, Text | None]] = {}
    date_format: Text | dict[str, Text] | None = None
    scale: dict[str, Annotated[float, Field(gt=0)]] = {}
    # Which mark is the decimal one where a column's values cannot tell (1,234 reads both ways).
    number_format: Annotated[NumberFormat | dict[str, NumberFormat] | None, BeforeValidator(_number_format)] = None
    defaults: dict[str, Text] = {}
    # Canonical columns mapped only when the file has their header (an optional export column, as a preset reads it).
    if_present: list[Text] = []
    from_opportunities: bool = False  # accounts only: one account per distinct account_id of the opportunities rows
    one_per_opportunity: bool = False  # accounts only, with from_opportunities: account_id is the opportunity_id
    join: Annotated[list[Join], BeforeValidator(_one_or_many)] = []
    outcome_rule: OutcomeRule | None = None  # opportunities only

    @field_validator("file")
    @classmethod
    def _inside_data_folder(cls, file: str | None) -> str | None:
        return file if file is None else _inside(file)

    def for_headers(self, headers: list[str]) -> TableMapping:
        """This mapping without the `if_present` columns whose header `headers` lack."""
        absent = {canonical for canonical in self.if_present if self.columns.get(canonical) not in headers}
        if not absent:
            return self
        return self.model_copy(update={"columns": {c: h for c, h in self.columns.items() if c not in absent}})

    def date_format_for(self, column: str) -> str | None:
        if isinstance(self.date_format, dict):
            return self.date_format.get(column)
        return self.date_format

    def number_format_for(self, column: str) -> NumberFormat | None:
        if isinstance(self.number_format, dict):
            return self.number_format.get(column)
        return self.number_format

    def rename(self, table: pa.Table) -> pa.Table:
        """Mapped columns under their canonical names; unmapped source columns pass through as they are."""
        sources = set(self.columns.values())
        renamed = {canonical: table[source] for canonical, source in self.columns.items()}
        for name in table.column_names:
            if name not in sources and name not in renamed:  # a mapped column wins over a same-named header
                renamed[name] = table[name]
        return pa.table(renamed)

    def map_values(self, frame: pd.DataFrame) -> None:
        """Replace listed values in place (exact match; cells are already trimmed); `*` catches the rest."""
        for column, replacements in self.values.items():
            if column not in frame:
                continue
            values = frame[column]
            explicit = {source.strip(): target for source, target in replacements.items() if source != CATCH_ALL}
            listed = values.isin(list(explicit))
            mapped = values.where(~listed, values.map(explicit))
            if CATCH_ALL in replacements:
                mapped = mapped.where(listed | values.isna(), replacements[CATCH_ALL])
            frame[column] = mapped

    def add_defaults(self, frame: pd.DataFrame) -> None:
        """Constant columns, in place, for canonical columns the export lacks."""
        for column, value in self.defaults.items():
            if column not in frame:
                frame[column] = value


class Mapping(_Strict):
    """A whole mapping: one `TableMapping` per canonical table."""

    description: str = ""
    accounts: TableMapping = TableMapping()
    opportunities: TableMapping = TableMapping()
    engagement: TableMapping = TableMapping()
    intent: TableMapping = TableMapping()
    _origin: str = PrivateAttr(DEFAULT_PRESET)

    @property
    def origin(self) -> str:
        """The preset name or file this mapping came from, for messages."""
        return self._origin

    def table(self, name: str) -> TableMapping:
        return getattr(self, name)

    @model_validator(mode="after")
    def _one_account_source(self) -> Mapping:
        if self.accounts.one_per_opportunity and "account_id" in self.opportunities.columns:
            raise ValueError(
                "accounts.one_per_opportunity makes each opportunity's id its account_id: remove account_id from "
                "opportunities.columns, or one_per_opportunity if that column names the account"
            )
        return self

    @field_validator(*TABLES)
    @classmethod
    def _known_columns(cls, section: TableMapping, info: ValidationInfo) -> TableMapping:
        assert info.field_name is not None  # pydantic names the field to every field validator
        issues = _column_name_issues(info.field_name, section)
        if section.from_opportunities and info.field_name != "accounts":
            issues.append("from_opportunities is for the accounts table only")
        if section.from_opportunities and section.file:
            issues.append(
                "from_opportunities reads the opportunities file(s): remove `file:` here (set it under opportunities)"
            )
        if section.from_opportunities and section.join:
            issues.append(
                "from_opportunities takes the opportunities rows as they are read: put `join:` under "
                "opportunities and map the joined headers here"
            )
        if section.one_per_opportunity:
            if info.field_name != "accounts" or not section.from_opportunities:
                issues.append("one_per_opportunity is for the accounts table, with from_opportunities: true")
            if "account_id" in section.columns:
                issues.append(
                    "one_per_opportunity takes each opportunity's id as its account_id: remove account_id from columns"
                )
        if section.outcome_rule is not None:
            if info.field_name != "opportunities":
                issues.append("outcome_rule is for the opportunities table only")
            derived = [name for name in ("outcome", "close_date") if name in section.columns or name in section.values]
            if derived:
                issues.append(
                    f"outcome_rule derives {' and '.join(derived)}: remove "
                    f"{' and '.join(derived)} from columns and values"
                )
        if issues:
            raise ValueError("; ".join(issues))
        return section


def _column_name_issues(table: str, section: TableMapping) -> list[str]:
    """Catch typos in canonical names: accounts may carry extra columns, other tables may not."""
    canonical = columns(table)
    issues = []
    named: dict[str, Any] = {
        "columns": section.columns,
        "values": section.values,
        "scale": section.scale,
        "defaults": section.defaults,
        "date_format": section.date_format if isinstance(section.date_format, dict) else {},
        "number_format": section.number_format if isinstance(section.number_format, dict) else {},
    }
    for key, entries in named.items():
        for name in entries:
            if name in canonical:
                kind = KIND_OF_KEY.get(key, canonical[name])
                if canonical[name] != kind:
                    issues.append(f"{key}: '{name}' is not a {kind} column")
                continue
            close = difflib.get_close_matches(name, canonical, n=1, cutoff=0.8)
            if close:
                issues.append(f"{key}: '{name}' is not a column of {table} (did you mean '{close[0]}'?)")
            elif table != "accounts":
                issues.append(f"{key}: '{name}' is not a column of {table} (its columns: {', '.join(canonical)})")
    return issues


class _Loader(yaml.SafeLoader):
    """Safe YAML with two traps closed: a repeated key is an error instead of silently replacing the
    first, and only true/false are booleans (YAML 1.1 also reads yes/no/on/off and NO, Norway's code)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_mapping(spec: str | Path | None = None) -> Mapping:
    """A preset by name (default `canonical`) or a mapping YAML file; DataError naming every problem."""
    spec = DEFAULT_PRESET if spec is None else str(spec)
    path = PRESET_DIR / f"{spec}.yaml" if spec in PRESETS else Path(spec)
    if not path.is_file():
        raise DataError(
            [
                Problem(
                    f"no mapping preset or file named '{spec}'",
                    fix=f"use a preset ({', '.join(PRESETS)}) or the path of a mapping YAML file",
                )
            ]
        )
    try:
        document = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(
            [
                Problem(
                    f"not valid YAML{_yaml_error_text(error)}",
                    fix="correct the YAML there (indentation, a colon after each key, quotes around values with ':' or "
                    "'#')",
                    file=spec,
                )
            ]
        ) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise DataError(
            [
                Problem(
                    "a mapping must be a YAML mapping of table names (accounts, opportunities, engagement, intent)",
                    fix="start the file with `accounts:` or `opportunities:` sections",
                    file=spec,
                )
            ]
        )
    try:
        mapping = Mapping.model_validate(document)
    except ValidationError as error:
        raise DataError([_problem_of(issue, spec) for issue in error.errors()]) from None
    mapping._origin = spec
    return mapping


def _yaml_error_text(error: Exception) -> str:
    """Where and what, without PyYAML's echo of the source line."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem is None:
        return f": {' '.join(str(error).split())}"
    mark = error.problem_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {error.problem}" + (f" ({error.context})" if error.context else "")


def _problem_of(issue: ErrorDetails, spec: str) -> Problem:
    path = ".".join(str(part) for part in issue["loc"])
    if not path:  # a rule across sections
        reason = str(issue.get("ctx", {}).get("error", issue["msg"]))
        return Problem(reason, fix="correct the mapping (docs/data-and-mapping.md lists every key)", file=spec)
    if issue["type"] == "extra_forbidden":
        parts = [str(part) for part in issue["loc"]]
        model = (
            Join
            if "join" in parts
            else OutcomeRule
            if "outcome_rule" in parts
            else Mapping
            if len(parts) == 1
            else TableMapping
        )
        allowed = list(model.model_fields)
        close = difflib.get_close_matches(str(issue["loc"][-1]), allowed, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return Problem(f"unknown key '{path}'", fix=f"{hint}keys allowed here: {', '.join(allowed)}", file=spec)
    reason = str(issue["ctx"]["error"]) if "error" in issue.get("ctx", {}) else issue["msg"]
    return Problem(
        f"'{path}': {reason}",
        fix="correct this entry of the mapping (docs/data-and-mapping.md lists every key)",
        file=spec,
    )
