"""`ConfigStore`: the scored configurations of once-for-all searches of one supernet, on disk.

    <workspace>/ofa/configs-<W>-<K>.<writer>.json   one file per writing process
    <workspace>/ofa/claims/<W>-<K>/<id>.<n>.claim   configurations being scored now

A configuration's score does not depend on the FLOPs target it was drawn
for, so every search of the same supernet weights, search space, calibration
and mode shares one store: a second target, a larger population or a resumed
run scores only configurations never scored. Files are written as
`SubnetStore` writes them: one per process, atomically, merged when read.
"""

import hashlib

from vai_optimizer_tf.search.subnet_store import SubnetStore, number_fields_problem


def config_id(genes):
    """The id of a gene vector: its choice indices joined by `-`."""
    return "-".join(str(int(g)) for g in genes)


def claim_id(candidate_id):
    """A short file-name-safe id for claims (gene ids of large models are long)."""
    return hashlib.sha256(candidate_id.encode()).hexdigest()[:20]


class ConfigStore(SubnetStore):
    """Records: configuration id -> `{"genes": [...], "flops_reduction": r, "score": s}`."""

    FORMAT = "vai_optimizer_tf.ofa_configs"
    PREFIX = "configs-"

    @staticmethod
    def parse_id(text):
        parts = text.split("-") if isinstance(text, str) else []
        return text if parts and all(p.isdigit() for p in parts) else None

    @staticmethod
    def format_id(candidate_id):
        return candidate_id

    @staticmethod
    def parse_record(raw):
        if not isinstance(raw, dict):
            return "is not a record"
        genes = raw.get("genes")
        if not isinstance(genes, list) or not all(
                isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in genes):
            return "has malformed `genes`"
        problem = number_fields_problem(raw, ("flops_reduction", "score"))
        if problem:
            return problem
        return {"genes": tuple(genes), "flops_reduction": float(raw["flops_reduction"]),
                "score": float(raw["score"])}

    @staticmethod
    def record_to_json(record):
        out = dict(record)
        out["genes"] = [int(g) for g in record["genes"]]
        return out

    def _records(self, data):
        records = super()._records(data)
        if isinstance(records, dict):
            for text, record in records.items():
                if config_id(record["genes"]) != text:
                    return f"subnet {text!r} has genes that do not match its id"
        return records


