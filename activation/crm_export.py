"""CRM write-back files (`tiering export SCORES --format salesforce|hubspot --out FILE`).

Upsert-ready CSVs in each CRM's own import format, keyed on the CRM's own account ids:

- Salesforce: a Data Loader / Bulk API 2.0 update CSV: `Id` (the 15- or 18-character Account Id) and custom fields
  by API name (`ABM_Tier__c`, `ABM_Score__c`, ...). Text fields are cut to 255 characters (a Text field's most),
  checkboxes are `true`/`false`, dates `YYYY-MM-DD`, date-times ISO 8601 UTC.
- HubSpot: a companies import CSV: `Record ID` (the company's numeric id) and custom company properties by
  internal name (`abm_tier`, `abm_score`, ...). Text is cut to 65,536 characters (a single-line text property's
  most), checkboxes are `true`/`false`, dates `YYYY-MM-DD`.

The CRM id is the scores' `account_id` when the export was read with that CRM's preset (the `salesforce` preset
reads `Account ID`, the `hubspot` preset `Company ID`), or it comes from an id map (`--ids FILE`: a CSV with
`account_id` and `crm_id`, e.g. an extra column of the accounts export). Rows whose id does not look like the
CRM's are refused before anything is written, so a canonical export's own ids are never uploaded by mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import DataError, Problem
from ingest.files import atomic_path, csv_text, neutralise_formulas
from ingest.problems import problem_at_rows

FORMATS = ("salesforce", "hubspot")
SALESFORCE_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")
HUBSPOT_ID = re.compile(r"^[1-9][0-9]{0,18}$")
SALESFORCE_TEXT_MAX = 255
HUBSPOT_TEXT_MAX = 65_536


@dataclass(frozen=True)
class Field:
    header: str  # the CRM's field (API name / internal property name)
    source: str  # the scores-file column
    kind: str  # text, number, percent, checkbox, date, datetime
    decimals: int = 2


SALESFORCE_FIELDS = (
    Field("ABM_Tier__c", "tier", "text"),
    Field("ABM_Score__c", "learned_score", "number"),
    Field("ABM_Rule_Score__c", "rule_score", "number"),
    Field("ABM_Win_Probability__c", "win_probability", "percent"),
    Field("ABM_Expected_Value__c", "expected_value", "number"),
    Field("ABM_Intent_Surge__c", "intent_surge", "checkbox"),
    Field("ABM_Surge_Channels__c", "surge_channels", "text"),
    Field("ABM_Reason_1__c", "reason_1", "text"),
    Field("ABM_Reason_2__c", "reason_2", "text"),
    Field("ABM_Reason_3__c", "reason_3", "text"),
    Field("ABM_Model_Version__c", "model_version", "text"),
    Field("ABM_As_Of__c", "as_of", "date"),
    Field("ABM_Scored_At__c", "scored_at", "datetime"),
)
HUBSPOT_FIELDS = tuple(
    Field(field.header.removesuffix("__c").lower(), field.source, field.kind, field.decimals)
    for field in SALESFORCE_FIELDS
)
LAYOUTS = {
    "salesforce": ("Id", SALESFORCE_ID, SALESFORCE_TEXT_MAX, SALESFORCE_FIELDS),
    "hubspot": ("Record ID", HUBSPOT_ID, HUBSPOT_TEXT_MAX, HUBSPOT_FIELDS),
}
ID_HELP = {
    "salesforce": "a 15- or 18-character Salesforce Account Id (e.g. 001Dn00000AbCdEIAZ)",
    "hubspot": "a numeric HubSpot company Record ID (e.g. 9876543210)",
}


FIELD_NAMES = {  # a custom field's API name (at most 40 characters before __c) / a property's internal name
    "salesforce": (
        re.compile(r"^(?=.{1,43}$)[A-Za-z](?:[A-Za-z0-9]|_(?!_))*__c$"),
        "a custom field API name like ABM_Tier__c",
    ),
    "hubspot": (re.compile(r"^[a-z][a-z0-9_]{0,99}$"), "an internal property name like abm_tier (lowercase)"),
}


# HubSpot's own company properties: a --field naming one would overwrite it on every company of the import (the
# company's name, its domain, its record id). HubSpot's internal names start hs_ or hubspot_; the others are the
# default properties every portal has.
HUBSPOT_BUILT_IN = frozenset(
    (
        "name domain website phone address address2 city state zip country timezone industry description "
        "about_us type lifecyclestage numberofemployees annualrevenue total_revenue founded_year is_public "
        "total_money_raised web_technologies createdate closedate first_deal_created_date recent_deal_amount "
        "recent_deal_close_date num_associated_contacts num_associated_deals days_to_close notes_last_updated "
        "notes_last_contacted num_notes num_contacted_notes engagements_last_meeting_booked "
        "first_contact_createdate linkedin_company_page linkedinbio twitterhandle twitterbio twitterfollowers "
        "facebook_company_page facebookfans googleplus_page owneremail ownername hubspotscore "
        "associatedcompanyid associations"
    ).split()
)
HUBSPOT_BUILT_IN_PREFIXES = ("hs_", "hubspot_")


def is_hubspot_built_in(name: str) -> bool:
    return name in HUBSPOT_BUILT_IN or name.startswith(HUBSPOT_BUILT_IN_PREFIXES)


def layout(fmt: str, renames: dict[str, str] | None = None) -> tuple[str, re.Pattern, int, tuple[Field, ...]]:
    """The format's key, id pattern, text limit and fields, with the field names `renames` gives (column -> name)."""
    key, pattern, limit, fields = LAYOUTS[fmt]
    renames = renames or {}
    return (
        key,
        pattern,
        limit,
        tuple(Field(renames.get(f.source, f.header), f.source, f.kind, f.decimals) for f in fields),
    )


def parse_renames(fmt: str, options: list[str]) -> dict[str, str]:
    """`--field tier=My_Tier__c` options as {scores column: CRM field name}; DataError naming each bad one."""
    check_format(fmt)
    pattern, shape = FIELD_NAMES[fmt]
    sources = [field.source for field in LAYOUTS[fmt][3]]
    renames: dict[str, str] = {}
    problems = []
    for option in options:
        column, _, name = option.partition("=")
        column, name = column.strip(), name.strip()
        if column not in sources:
            problems.append(
                Problem(
                    f"--field {option!r}: {column!r} is not an exported column",
                    f"use one of {', '.join(sources)}, as COLUMN=FIELD",
                )
            )
        elif not pattern.fullmatch(name):
            problems.append(Problem(f"--field {option!r}: {name!r} is not {shape}", f"name a {fmt} field: {shape}"))
        elif fmt == "hubspot" and is_hubspot_built_in(name):
            problems.append(
                Problem(
                    f"--field {option!r}: {name!r} is one of HubSpot's own company properties: the import would "
                    "overwrite it on every company",
                    "name a custom property of your own, e.g. abm_" + column,
                )
            )
        elif column in renames:
            problems.append(
                Problem(
                    f"--field names {column!r} twice ({renames[column]!r} and {name!r})",
                    "give each column one --field",
                )
            )
        else:
            renames[column] = name
    names = [field.header for field in layout(fmt, renames)[3]]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(
            Problem(f"--field gives two columns the same field {', '.join(repeated)}", "give each column its own field")
        )
    if problems:
        raise DataError(problems)
    return renames


def check_mapping(fmt: str, mapping: str | None, id_map_given: bool) -> None:
    """Scores of an export read with another CRM's preset (or a canonical export) do not carry this CRM's ids."""
    from ingest.mapping import PRESETS

    if mapping is None or id_map_given or mapping == fmt or mapping not in PRESETS:
        return  # a mapping file: the ids' shape is checked row by row
    raise DataError(
        [
            Problem(
                f"the scores come from an export read with --mapping {mapping}: their account_id is not the {fmt} id",
                f"pass --ids FILE mapping account_id to the {fmt} id (crm_id)",
            )
        ]
    )


def header(fmt: str, renames: dict[str, str] | None = None) -> list[str]:
    key, _, _, fields = layout(fmt, renames)
    return [key, *(field.header for field in fields)]


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise DataError([Problem(f"unknown --format {fmt!r}", f"use one of {', '.join(FORMATS)}")])


def check_export_target(path: Path, fmt: str, renames: dict[str, str] | None = None) -> None:
    """Refuse an --out that is not .csv, or an existing file that is not an export of this format."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise DataError(
            [
                Problem(
                    "the CRM import file must end in .csv",
                    f"name it e.g. {path.with_suffix('.csv').name}",
                    file=str(path),
                )
            ]
        )
    from ingest.files import check_writable_target

    check_writable_target(path)
    if path.exists():
        try:
            with open(path, encoding="utf-8") as handle:
                first = handle.readline().strip()
        except (OSError, UnicodeDecodeError):
            first = None
        if first not in (",".join(header(fmt)), ",".join(header(fmt, renames))) and path.stat().st_size:
            raise DataError(
                [
                    Problem(
                        f"exists and is not a {fmt} export written by `tiering export`: it is never replaced",
                        "choose another --out, or move the file away",
                        file=str(path),
                    )
                ]
            )


def read_id_map(path: Path) -> dict[str, str]:
    """`account_id,crm_id` rows (UTF-8, cp1252 or Latin-1; comma, semicolon or tab)."""
    path = Path(path)
    if not path.is_file():
        raise DataError([Problem("id map not found", "pass a CSV with the columns account_id,crm_id", file=str(path))])
    from ingest.io import read_side_csv

    frame = read_side_csv(path)
    missing = [column for column in ("account_id", "crm_id") if column not in frame.columns]
    if missing:
        raise DataError(
            [Problem(f"missing column(s) {', '.join(missing)}", "the header must be account_id,crm_id", file=path.name)]
        )
    frame = frame[["account_id", "crm_id"]].apply(lambda column: column.astype("str").str.strip())
    duplicated = frame.index[frame["account_id"].duplicated(keep=False)]
    if len(duplicated):
        raise DataError(
            [
                problem_at_rows(
                    duplicated,
                    "an account has more than one crm_id",
                    "keep one row per account",
                    file=path.name,
                    column="account_id",
                )
            ]
        )
    shared = frame.index[frame["crm_id"].duplicated(keep=False) & (frame["crm_id"].str.len() > 0)]
    if len(shared):  # two rows of the import for one CRM record: one would overwrite the other
        raise DataError(
            [
                problem_at_rows(
                    shared,
                    f"accounts share one crm_id (e.g. {frame.at[shared[0], 'crm_id']!r}): the import would write two "
                    "rows for one CRM record",
                    "give each account its own crm_id (or leave it out of the id map)",
                    file=path.name,
                    column="crm_id",
                )
            ]
        )
    return dict(zip(frame["account_id"], frame["crm_id"]))


def _text(values: pd.Series, limit: int) -> pd.Series:
    text = values.astype(object).where(values.notna(), "").astype(str)
    return text.str.slice(0, limit)


def _checkbox(values: pd.Series) -> pd.Series:
    truthy = values.map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
    return truthy.map({True: "true", False: "false"})


def export_frame(
    scores: pd.DataFrame,
    fmt: str,
    id_map: dict[str, str] | None = None,
    source: str = "scores",
    renames: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The import rows for `fmt`, and how many accounts were left out (no crm id in the id map)."""
    check_format(fmt)
    key, pattern, limit, fields = layout(fmt, renames)
    accounts = scores["account_id"].astype(str)
    skipped = 0
    if id_map is not None:
        ids = accounts.map(id_map)
        keep = ids.notna() & (ids.astype(str).str.len() > 0)
        skipped = int((~keep).sum())
        scores, ids = scores[keep.to_numpy()], ids[keep]
    else:
        ids = accounts
    ids = ids.astype(str).reset_index(drop=True)
    bad = ids.index[~ids.str.fullmatch(pattern)]
    if len(bad):
        where = "crm_id in the id map" if id_map is not None else "account_id"
        raise DataError(
            [
                problem_at_rows(
                    bad,
                    f"{len(bad):,} id(s) are not {ID_HELP[fmt]}, e.g. {ids[bad[0]]!r}",
                    "score an export read with the matching preset (--mapping " + fmt + "), or pass "
                    "--ids FILE mapping account_id to the CRM's crm_id",
                    file=source,
                    column=where,
                )
            ]
        )
    scores = scores.reset_index(drop=True)
    out = {key: ids}
    for field in fields:
        values = scores[field.source] if field.source in scores else pd.Series([None] * len(scores))
        if field.kind == "text":
            out[field.header] = _text(values, limit)
        elif field.kind == "checkbox":
            out[field.header] = _checkbox(values)
        elif field.kind in ("number", "percent"):
            number = pd.to_numeric(values, errors="coerce").astype("float64")
            if field.kind == "percent":
                number = number * 100
            out[field.header] = np.round(number, field.decimals)
        elif field.kind == "date":
            out[field.header] = _text(values, 10)
        else:  # datetime: ISO 8601 as the scores file writes it (UTC)
            out[field.header] = _text(values, 64)
    # Formulas neutralised first, then cut: the quote counts towards the field's length.
    frame = neutralise_formulas(pd.DataFrame(out, columns=header(fmt, renames)))
    for field in fields:
        if field.kind == "text":
            frame[field.header] = frame[field.header].astype(str).str.slice(0, limit)
    return frame, skipped


def write_export(frame: pd.DataFrame, path: Path) -> Path:
    """Atomically, as RFC 4180 CSV (`csv_text`); empty numbers are empty cells (the CRM field is left blank)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_bytes(csv_text(frame).encode("utf-8"))
    return path
