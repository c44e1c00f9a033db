import pytest
from fhir.resources.R4B.bundle import Bundle

from vaxreport.fhir import bundles as fb

pytestmark = pytest.mark.unit

ROW = {
    "source": "urn:vaxreport:source:embedded-journal",
    "source_record_id": "EMB-20261121-000001",
    "person_id": "201401012396",
    "vaccine_name": "Comirnaty JN.1",
    "npl_id": "20990101000181",
    "batch": "HH8191",
    "dose_number": 2,
    "vaccination_date": "2026-11-21",
    "caregiver_hsa_id": "SE2321000016-0001",
    "caregiver_name": "Region Stockholm",
    "care_unit_hsa_id": "SE2321000016-VC02",
    "care_unit_name": "Vårdcentral Tensta",
    "record_status": "completed",
    "registered_at": "2026-11-21 08:00:00",
}


def test_entry_is_a_conditional_create_with_contained_parts():
    entry = fb.immunization_entry(ROW)
    assert entry["request"] == {
        "method": "POST",
        "url": "Immunization",
        "ifNoneExist": f"identifier={ROW['source']}|{ROW['source_record_id']}",
    }
    imm = entry["resource"]
    assert {c["id"] for c in imm["contained"]} == {"patient", "caregiver", "careunit", "vaccine"}
    assert imm["protocolApplied"] == [{"doseNumberPositiveInt": 2}]
    assert imm["lotNumber"] == "HH8191"


def test_same_record_same_ids():
    a, b = fb.immunization_entry(ROW), fb.immunization_entry(dict(ROW))
    assert a["fullUrl"] == b["fullUrl"]
    assert fb.batch_bundle([a])["id"] == fb.batch_bundle([b])["id"]
    other = fb.immunization_entry({**ROW, "source_record_id": "EMB-20261121-000002"})
    assert other["fullUrl"] != a["fullUrl"]


def test_bundle_parses_as_r4_and_refuses_more_than_100():
    entries = [fb.immunization_entry({**ROW, "source_record_id": f"R{i}"}) for i in range(100)]
    parsed = Bundle.model_validate(fb.batch_bundle(entries))
    assert parsed.type == "batch"
    assert len(parsed.entry) == 100
    with pytest.raises(ValueError, match=r"1\.\.100"):
        fb.batch_bundle([*entries, entries[0]])
    with pytest.raises(ValueError, match="not 0"):
        fb.batch_bundle([])


def test_samordningsnummer_gets_its_own_system_and_free_text_vaccine_has_no_code():
    from vaxreport.synthetic.generate import samordningsnummer_for

    sam = samordningsnummer_for("189001019802")
    entry = fb.immunization_entry({**ROW, "person_id": sam, "npl_id": None, "vaccine_name": "Prioirx"})
    patient = entry["resource"]["contained"][0]
    assert patient["identifier"][0]["system"] == fb.SAMORDNINGSNUMMER
    assert entry["resource"]["vaccineCode"] == {"text": "Prioirx"}


def test_send_order_puts_earlier_doses_and_originals_first():
    rows = [
        {**ROW, "source_record_id": "B", "vaccination_date": "2026-11-20"},
        {**ROW, "source_record_id": "A", "vaccination_date": "2026-11-21"},
        {**ROW, "source_record_id": "C", "vaccination_date": "2026-11-14"},
    ]
    assert [r["source_record_id"] for r in fb.send_order(rows)] == ["C", "B", "A"]
    assert [len(c) for c in fb.chunked(list(range(250)))] == [100, 100, 50]


def test_a_record_the_register_holds_is_sent_as_an_update_of_its_id():
    entry = fb.immunization_entry({**ROW, "register_id": "abc-123"})
    assert entry["request"] == {"method": "PUT", "url": "Immunization/abc-123"}
    assert entry["resource"]["id"] == "abc-123"
    Bundle.model_validate(fb.batch_bundle([entry]))
