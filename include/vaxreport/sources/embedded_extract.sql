-- Records registered or changed in the half-open UTC window given by the start and end parameters.
SELECT record_id, patient_id, vaccine_name, npl_id, batch, dose_number, vaccination_date,
       caregiver_hsa_id, caregiver_name, care_unit_hsa_id, care_unit_name, status,
       registered_at, updated_at
FROM vaccinations
WHERE updated_at >= :start AND updated_at < :end
ORDER BY updated_at, record_id
