SELECT post_id, personnr, vaccin, satsnummer, dosnummer, vaccinationsdatum, vardgivare_hsaid, vardgivare,
       vardenhet_hsaid, vardenhet, makulerad, registrerad, andrad
FROM journalexport
WHERE andrad >= :start AND andrad < :end
ORDER BY andrad, post_id
