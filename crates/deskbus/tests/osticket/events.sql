-- The `event` rows of a fresh 1.14+ install (reference §3).
INSERT INTO PREFIX_event (id, name) VALUES
  (1, 'created'), (2, 'closed'), (3, 'reopened'), (4, 'assigned'), (5, 'released'),
  (6, 'transferred'), (7, 'referred'), (8, 'overdue'), (9, 'edited'), (10, 'viewed'),
  (11, 'error'), (12, 'collab'), (13, 'resent'), (14, 'deleted'), (15, 'merged'),
  (16, 'unlinked'), (17, 'linked'), (18, 'login'), (19, 'logout'), (20, 'message'),
  (21, 'note');
