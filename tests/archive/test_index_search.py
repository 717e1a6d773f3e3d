"""Searches on the index: what PostgreSQL sends back for each match."""

from __future__ import annotations

import json

from archive._sql import json_tag
from archive.attributes import Level
from archive.index import Index
from archive.query import Query
from tests.archive.index_rows import rows_for
from tests.factory import new_uid


async def test_instance_matches_carry_only_the_attributes_asked_for(
    index: Index,
) -> None:
    study = new_uid()
    assert await index.insert_instance(*rows_for(study, new_uid()))
    query = Query(Level.IMAGE, study_instance_uid=study)
    wanted = {json_tag("SOPInstanceUID"), json_tag("PatientName")}
    [row], _ = await index.search(query, wanted)
    assert set(json.loads(row["instance_metadata"])) == wanted
    [whole], _ = await index.search(query)
    assert len(json.loads(whole["instance_metadata"])) > len(wanted)


async def test_asking_for_attributes_an_instance_lacks_gives_an_empty_object(
    index: Index,
) -> None:
    study = new_uid()
    assert await index.insert_instance(*rows_for(study, new_uid()))
    query = Query(Level.IMAGE, study_instance_uid=study)
    [row], _ = await index.search(query, {json_tag("ScanOptions")})
    assert json.loads(row["instance_metadata"]) == {}
