"""An independent openEHR client (oehrpy, PyPI) against a running cophr node.

Run by tests/tests/openehr_client.rs (`.ci/deps` installs oehrpy into .venv), or by hand:
    python3 -m venv .venv && .venv/bin/pip install -r tests/openehr-client/requirements.txt
    cophr node run --http 127.0.0.1:0 &        # a home whose identity holds its own record
    COPHR_HOME=~/.cophr .venv/bin/python tests/openehr-client/smoke.py
It fails (an exception, or an assertion) unless every step behaves as ITS-REST says. Its last
line is a JSON summary; it leaves one problem composition in place for the caller to check.
"""
import asyncio, json, os, sys
from oehrpy.client import OpenEHRClient, BearerAuth, ContributionBuilder
from oehrpy.client.openehr import PreconditionFailedError, NotFoundError, ValidationError, OpenEHRError

home = os.environ["COPHR_HOME"]
node = json.load(open(f"{home}/node.json"))
token = open(f"{home}/api-token").read().strip()
record = node["actor"]

def dv(s): return {"_type": "DV_TEXT", "value": s}

LANG = {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "ISO_639-1"}, "code_string": "en"}

def composition(template, archetype, name, content):
    return {
        "_type": "COMPOSITION", "name": dv(name), "archetype_node_id": archetype,
        "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": archetype},
                              "template_id": {"_type": "TEMPLATE_ID", "value": template}, "rm_version": "1.0.4"},
        "language": LANG, "composer": {"_type": "PARTY_SELF"},
        "context": {"_type": "EVENT_CONTEXT", "start_time": {"_type": "DV_DATE_TIME", "value": "2026-12-06T07:00:00Z"}},
        "content": content,
    }

def element(node, value):
    return {"_type": "ELEMENT", "name": dv(node), "archetype_node_id": node, "value": value}

def problem(name, status):
    qualifier = {"_type": "CLUSTER", "name": dv("Problem/Diagnosis qualifier"),
                 "archetype_node_id": "openEHR-EHR-CLUSTER.problem_qualifier.v1",
                 "items": [element("at0004", {"_type": "DV_CODED_TEXT", "value": status,
                                              "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "cophr"}, "code_string": status}})]}
    return composition("cophr.problems.v1", "openEHR-EHR-COMPOSITION.problem_list.v2", "Problem list", [
        {"_type": "EVALUATION", "name": dv("Problem/Diagnosis"), "archetype_node_id": "openEHR-EHR-EVALUATION.problem_diagnosis.v1",
         "language": LANG, "subject": {"_type": "PARTY_SELF"},
         "data": {"_type": "ITEM_TREE", "name": dv("Tree"), "archetype_node_id": "at0001",
                  "items": [element("at0002", dv(name)), element("at0077", {"_type": "DV_DATE", "value": "2019-05-01"}), qualifier]}}])

def bp(sys_, dia):
    lang = {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "ISO_639-1"}, "code_string": "en"}
    q = lambda v, node: {"_type": "ELEMENT", "name": dv(node), "archetype_node_id": node,
                         "value": {"_type": "DV_QUANTITY", "magnitude": v, "units": "mm[Hg]"}}
    return {
        "_type": "COMPOSITION", "name": dv("Vital signs"),
        "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
        "archetype_details": {"_type": "ARCHETYPED", "archetype_id": {"_type": "ARCHETYPE_ID", "value": "openEHR-EHR-COMPOSITION.encounter.v1"},
                              "template_id": {"_type": "TEMPLATE_ID", "value": "cophr.vital_signs.v1"}, "rm_version": "1.0.4"},
        "language": lang, "composer": {"_type": "PARTY_SELF"},
        "context": {"_type": "EVENT_CONTEXT", "start_time": {"_type": "DV_DATE_TIME", "value": "2026-12-06T07:00:00Z"}},
        "content": [{"_type": "OBSERVATION", "name": dv("Blood pressure"), "archetype_node_id": "openEHR-EHR-OBSERVATION.blood_pressure.v2",
                     "language": lang, "subject": {"_type": "PARTY_SELF"},
                     "data": {"_type": "HISTORY", "name": dv("History"), "archetype_node_id": "at0001",
                              "origin": {"_type": "DV_DATE_TIME", "value": "2026-12-06T06:58:00Z"},
                              "events": [{"_type": "POINT_EVENT", "name": dv("Any event"), "archetype_node_id": "at0006",
                                          "time": {"_type": "DV_DATE_TIME", "value": "2026-12-06T06:58:00Z"},
                                          "data": {"_type": "ITEM_TREE", "name": dv("Tree"), "archetype_node_id": "at0003",
                                                   "items": [q(sys_, "at0004"), q(dia, "at0005")]}}]}}],
    }

async def main():
    async with OpenEHRClient(base_url=node["http"], auth_method=BearerAuth(token=token)) as c:
        ehr = await c.get_ehr_by_subject(record, "cophr")
        assert ehr.ehr_id
        st = await c.get_ehr_status(ehr.ehr_id)
        assert st["subject"]["external_ref"]["id"]["value"] == record
        made = await c.create_composition(ehr.ehr_id, bp(131, 84), template_id="cophr.vital_signs.v1", format="JSON")
        assert made.uid.endswith("::cophr::1"), made.uid
        got = await c.get_composition(ehr.ehr_id, made.uid)
        items = got.composition["content"][0]["data"]["events"][0]["data"]["items"]
        assert items[0]["value"]["magnitude"] == 131
        obj = made.uid.split("::")[0]
        upd = await c.update_composition(ehr.ehr_id, obj, made.uid, bp(127, 80), template_id="cophr.vital_signs.v1", format="JSON")
        assert upd.uid == made.uid.replace("::1", "::2"), upd.uid
        try:
            await c.update_composition(ehr.ehr_id, obj, made.uid, bp(140, 90), template_id="cophr.vital_signs.v1", format="JSON")
            raise AssertionError("a stale update was accepted")
        except PreconditionFailedError:
            pass
        res = await c.query("SELECT c/uid/value, o/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value/magnitude "
                            "FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.blood_pressure.v2]")
        assert [upd.uid, 127] in res.rows, res.rows
        done = ["EHR", "EHR_STATUS", "create", "read", "update", "stale 412", "AQL"]
        # The same query by GET, paged; then stored on the node and run by name.
        bp_q = ("SELECT c/uid/value, o/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value/magnitude "
                "FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.blood_pressure.v2]")
        res = await c.query_get(bp_q, ehr_id=ehr.ehr_id, offset=0, fetch=1)
        assert res.rows == [[upd.uid, 127]], res.rows
        await c.store_query("org.example::blood_pressure", bp_q, version="1.0.0")
        sq = await c.get_stored_query("org.example::blood_pressure")
        assert sq.version == "1.0.0" and sq.q == bp_q, sq
        assert "org.example::blood_pressure" in [q.name for q in await c.list_stored_queries()]
        res = await c.execute_stored_query("org.example::blood_pressure", "1.0.0", ehr_id=ehr.ehr_id)
        assert [upd.uid, 127] in res.rows, res.rows
        # An EHR is not created over openEHR: this identity's exists (409 with its id).
        try:
            await c.create_ehr()
            raise AssertionError("an EHR was created")
        except OpenEHRError as e:
            assert e.status_code == 409, e.status_code
        done += ["GET AQL", "stored query", "EHR exists 409"]
        # Version history: each version by uid (nothing overwritten), the revision history.
        vc = await c.get_versioned_composition(ehr.ehr_id, obj)
        assert vc.uid == obj and vc.owner_id == ehr.ehr_id, vc
        first = await c.get_composition_version(ehr.ehr_id, obj, made.uid)
        assert first.preceding_version_uid is None and first.lifecycle_state == "complete", first
        assert first.data["content"][0]["data"]["events"][0]["data"]["items"][0]["value"]["magnitude"] == 131
        second = await c.get_composition_version(ehr.ehr_id, obj, upd.uid)
        assert second.preceding_version_uid == made.uid, second
        r = await c.client.get(f"/rest/openehr/v1/ehr/{ehr.ehr_id}/versioned_composition/{obj}/revision_history")
        assert r.status_code == 200, r.text
        assert [i["version_id"]["value"] for i in r.json()] == [made.uid, upd.uid], r.text
        done += ["versioned composition", "version by uid", "revision history"]
        # A contribution: a creation and a modification, written together and read back.
        contribution = (ContributionBuilder(system_id="oehrpy-smoke")
                        .add_creation(bp(118, 76))
                        .add_modification(upd.uid, bp(125, 81))
                        .set_audit(committer="smoke test", description="two versions at once")
                        .build())
        made_c = await c.create_contribution(ehr.ehr_id, contribution)
        assert len(made_c.versions) == 2 and made_c.versions[1] == upd.uid.replace("::2", "::3"), made_c
        got_c = await c.get_contribution(ehr.ehr_id, made_c.contribution_uid)
        assert sorted(got_c.versions) == sorted(made_c.versions), got_c
        try:
            await c.create_contribution(ehr.ehr_id, ContributionBuilder().add_modification(upd.uid, bp(99, 60)).build())
            raise AssertionError("a stale contribution was accepted")
        except PreconditionFailedError:
            pass
        upd = await c.get_composition(ehr.ehr_id, obj)
        assert upd.uid == made_c.versions[1], upd.uid
        done += ["contribution", "stale contribution 412"]
        try:
            bad = bp(120, 80); bad["content"][0]["archetype_node_id"] = "openEHR-EHR-OBSERVATION.height.v2"
            await c.create_composition(ehr.ehr_id, bad, template_id="cophr.vital_signs.v1", format="JSON")
            raise AssertionError("a wrong archetype was accepted")
        except ValidationError as e:
            assert e.status_code == 422, e.status_code  # ITS-REST 422_COMPOSITION
        await c.delete_composition(ehr.ehr_id, upd.uid)
        got = await c.get_composition(ehr.ehr_id, obj)
        assert not got.composition, "read as deleted (204)"
        done += ["422", "delete"]

        # Core templates beyond vital signs: the web template, an immunisation written in
        # FLAT (kept, for the caller to read back through the CLI) and read back in FLAT, and
        # a procedure the caller added through the CLI, found with AQL.
        wt = await c.get_web_template("cophr.immunisations.v1")
        assert wt["templateId"] == "cophr.immunisations.v1" and wt["tree"]["id"] == "immunisation_list", wt
        flat = {"ctx/language": "en", "ctx/territory": "GB", "ctx/composer_name": "oehrpy",
                "immunisation_list/immunisation:0/immunisation": "Influenza vaccine",
                "immunisation_list/immunisation:0/time": "2025-10-03T09:00:00Z",
                "immunisation_list/immunisation:0/ism_transition/current_state|code": "532"}
        imm = await c.create_composition(ehr.ehr_id, flat, template_id="cophr.immunisations.v1", format="FLAT")
        assert imm.uid.endswith("::cophr::1"), imm.uid
        back = await c.get_composition(ehr.ehr_id, imm.uid, format="FLAT")
        assert back.composition["immunisation_list/immunisation/immunisation"] == "Influenza vaccine", back.composition
        assert back.composition["immunisation_list/immunisation/time"] == "2025-10-03", back.composition
        try:
            await c.create_composition(ehr.ehr_id, {"immunisation_list/immunisation/vaccinator": "x"},
                                       template_id="cophr.immunisations.v1", format="FLAT")
            raise AssertionError("an unknown FLAT path was accepted")
        except ValidationError as e:
            assert e.status_code == 422, e.status_code
        done += ["web template", "FLAT create", "FLAT read", "FLAT 422"]

        # A lab result (one of the later core templates) in FLAT, found with AQL: the
        # result is the lab's text, its unit beside it.
        lab = "laboratory_result_report/laboratory_test_result:0/any_event:0"
        made = await c.create_composition(ehr.ehr_id, {
            "ctx/language": "en", "ctx/territory": "GB",
            f"{lab}/test": "HbA1c",
            f"{lab}/laboratory_analyte_result/result": "48",
            f"{lab}/laboratory_analyte_result/unit": "mmol/mol",
            f"{lab}/time": "2026-11-30T08:10:00Z"}, template_id="cophr.lab_results.v1", format="FLAT")
        assert made.uid.endswith("::cophr::1"), made.uid
        an = "o/data[at0001]/events[at0002]/data[at0003]/items[openEHR-EHR-CLUSTER.laboratory_test_analyte.v1]"
        res = await c.query(f"SELECT o/data[at0001]/events[at0002]/data[at0003]/items[at0005]/value/value, "
                            f"{an}/items[at0001]/value/value, {an}/items[at9000]/value/value "
                            "FROM EHR e CONTAINS COMPOSITION c "
                            "CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.laboratory_test_result.v1] "
                            "WHERE o/data[at0001]/events[at0002]/data[at0003]/items[at0005]/value/value = 'HbA1c'")
        assert res.rows == [["HbA1c", "48", "mmol/mol"]], res.rows
        done += ["lab result", "lab result AQL"]

        # An extension defined as data (the caller defined wound care through the CLI): its
        # generic template listed with its web template, a composition of it written in FLAT
        # (kept, for the caller to read back through the CLI) and found by its archetype.
        if os.environ.get("WOUND_TEMPLATE"):
            tid = os.environ["WOUND_TEMPLATE"]
            r = await c.client.get("/rest/openehr/v1/definition/template/adl1.4")
            assert r.status_code == 200 and tid in [t["template_id"] for t in r.json()], r.text
            wt = await c.get_web_template(tid)
            root = wt["tree"]["id"]
            entry = wt["tree"]["children"][-1]["id"]
            base = f"{root}/{entry}"
            wound = await c.create_composition(ehr.ehr_id, {
                f"{base}/wound_type|code": "pressure-ulcer",
                f"{base}/location": "left heel",
                f"{base}/length|magnitude": 3.5, f"{base}/length|unit": "cm",
                f"{base}/pain_score": 4,
                f"{base}/assessed": "2026-12-01T10:00:00Z"}, template_id=tid, format="FLAT")
            assert wound.uid.endswith("::cophr::1"), wound.uid
            arch = "openEHR-EHR-EVALUATION.cophr_ext_uk_nhs_tissue_viability__wound_care.v1"
            res = await c.query("SELECT w/data[at0001]/items[at1002]/value/value, w/data[at0001]/items[at1013]/value/magnitude "
                                f"FROM EHR e CONTAINS COMPOSITION c CONTAINS EVALUATION w[{arch}]")
            assert res.rows == [["left heel", 4]], res.rows
            try:
                await c.create_composition(ehr.ehr_id, {f"{base}/wound_type|code": "graze", f"{base}/location": "x",
                                                        f"{base}/assessed": "2026-12-01T10:00:00Z"},
                                           template_id=tid, format="FLAT")
                raise AssertionError("a code outside the extension's value set was accepted")
            except ValidationError as e:
                assert e.status_code == 422, e.status_code
            done += ["extension template", "extension create", "extension AQL", "extension 422"]
        # A template-based extension: the client uploads an OPT (the shipped wound
        # assessment), writes a FLAT composition of it (kept, for the caller to read back
        # through the CLI), finds it by the template's own archetype id; the same OPT again
        # is a conflict.
        if os.environ.get("WOUND_OPT"):
            with open(os.environ["WOUND_OPT"], encoding="utf-8") as f:
                opt = f.read()
            up = await c.upload_template(opt)
            assert up.template_id == "Wound assessment.v1", up
            wt = await c.get_web_template(up.template_id)
            assert wt["templateId"] == up.template_id, wt
            ev = "wound_assessment/wound_examination/any_event"
            made = await c.create_composition(ehr.ehr_id, {
                f"{ev}/time": "2026-12-02T10:00:00Z",
                f"{ev}/body_site": "sacrum",
                f"{ev}/wound_type|code": "at0101",
                f"{ev}/width|magnitude": 12, f"{ev}/width|unit": "mm"},
                template_id=up.template_id, format="FLAT")
            assert made.uid.endswith("::cophr::1"), made.uid
            res = await c.query("SELECT o/data[at0001]/events[at0002]/data[at0003]/items[at0004]/value/value, "
                                "o/data[at0001]/events[at0002]/data[at0003]/items[at0100]/value/defining_code/code_string "
                                "FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.exam.v1]")
            assert res.rows == [["sacrum", "at0101"]], res.rows
            r = await c.client.post("/rest/openehr/v1/definition/template/adl1.4", content=opt,
                                    headers={"Content-Type": "application/xml"})
            assert r.status_code == 409, (r.status_code, r.text)
            done += ["OPT upload", "OPT create", "OPT AQL", "OPT 409"]
        if os.environ.get("PROCEDURE"):
            res = await c.query("SELECT a/description[at0001]/items[at0002]/value/value, a/time/value "
                                "FROM EHR e CONTAINS COMPOSITION c CONTAINS ACTION a[openEHR-EHR-ACTION.procedure.v1]")
            assert [os.environ["PROCEDURE"], os.environ["PROCEDURE_DATE"]] in res.rows, res.rows
            done.append("procedure from the CLI")

        # A problem written through openEHR, left in place: the caller reads it back through
        # the CLI.
        kept = await c.create_composition(ehr.ehr_id, problem("Type 2 diabetes mellitus", "active"),
                                          template_id="cophr.problems.v1", format="JSON")
        assert kept.uid.endswith("::cophr::1"), kept.uid
        done.append("problem kept")
        print(json.dumps({"ok": True, "done": done, "problem_status": "active", "problem_uid": kept.uid,
                          "immunisation": "Influenza vaccine"}))

asyncio.run(main())
