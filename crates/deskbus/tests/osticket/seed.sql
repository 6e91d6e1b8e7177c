-- A fresh install's rows (reference §2), plus a sub-department and an
-- agent, for deskbus's tests. `PREFIX_` is replaced by the test's prefix.

INSERT INTO PREFIX_department (id, pid, name, path, updated, created) VALUES
  (1, NULL, 'Support', '/1/', NOW(), NOW()),
  (2, NULL, 'Sales', '/2/', NOW(), NOW()),
  (3, NULL, 'Maintenance', '/3/', NOW(), NOW()),
  (4, 1, 'Level 2', '/1/4/', NOW(), NOW());

INSERT INTO PREFIX_help_topic (topic_id, topic_pid, dept_id, topic, created, updated) VALUES
  (1, 0, 0, 'General Inquiry', NOW(), NOW()),
  (2, 0, 0, 'Feedback', NOW(), NOW()),
  (10, 0, 3, 'Report a Problem', NOW(), NOW()),
  (11, 10, 0, 'Access Issue', NOW(), NOW());

INSERT INTO PREFIX_ticket_status (id, name, state, properties, created, updated) VALUES
  (1, 'Open', 'open', '{}', NOW(), NOW()),
  (2, 'Resolved', 'closed', '{}', NOW(), NOW()),
  (3, 'Closed', 'closed', '{}', NOW(), NOW()),
  (4, 'Archived', 'archived', '{}', NOW(), NOW()),
  (5, 'Deleted', 'deleted', '{}', NOW(), NOW());

INSERT INTO PREFIX_ticket_priority (priority_id, priority, priority_desc, priority_urgency) VALUES
  (1, 'low', 'Low', 4), (2, 'normal', 'Normal', 3), (3, 'high', 'High', 2), (4, 'emergency', 'Emergency', 1);

INSERT INTO PREFIX_staff (staff_id, dept_id, username, firstname, lastname, email, updated) VALUES
  (1, 1, 'ava', 'Ava', 'Admin', 'ava@example.com', NOW()),
  (2, 1, 'bob', 'Bob', 'Agent', 'bob@example.com', NOW());

INSERT INTO PREFIX_team (team_id, name) VALUES (1, 'Level 1');
