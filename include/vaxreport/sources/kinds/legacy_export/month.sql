SELECT post_id, personnr, vaccin, satsnummer, dosnummer, vaccinationsdatum, vardgivare_hsaid, vardgivare,
       vardenhet_hsaid, vardenhet, makulerad, registrerad, andrad AS changed_at
FROM journalexport
WHERE vaccinationsdatum >= :first AND vaccinationsdatum < :next
ORDER BY post_id
