SELECT a.id AS administration_id, p.ssn, a.drug_code, a.drug_name, a.lot, a.dose_seq, a.administered_at,
       u.provider_hsa_id, u.provider_name, u.unit_hsa_id, u.unit_name, a.status, a.recorded_at,
       a.modified_at AS changed_at
FROM administrations a
JOIN patients p ON p.id = a.patient_id
JOIN units u ON u.id = a.unit_id
WHERE a.administered_at >= :first AND a.administered_at < :next
ORDER BY a.id
