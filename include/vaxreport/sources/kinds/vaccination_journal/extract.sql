SELECT id, patient_ssn, npl_id, vaccine_name, lot_number, dose_number, administered_on, care_provider_hsa_id,
       care_provider_name, care_unit_hsa_id, care_unit_name, voided, registered_at, updated_at
FROM vaccinations
WHERE updated_at >= :start AND updated_at < :end
ORDER BY updated_at, id
