SELECT id, patient_ssn, npl_id, vaccine_name, lot_number, dose_number, administered_on, care_provider_hsa_id,
       care_provider_name, care_unit_hsa_id, care_unit_name, voided, registered_at, updated_at AS changed_at
FROM vaccinations
WHERE administered_on >= :first AND administered_on < :next
ORDER BY id
