-- osTicket 1.18-style tables, written for deskbus's tests from the column
-- tables of ../shared/reference/osticket.md (not osTicket's own SQL): the
-- tables and columns the osticket source reads, plus enough of the rest to
-- write what osTicket writes. `PREFIX_` is replaced by the test's prefix.

CREATE TABLE PREFIX_ticket (
  ticket_id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ticket_pid int unsigned NULL,
  number varchar(20) NULL,
  user_id int unsigned NOT NULL DEFAULT 0,
  user_email_id int unsigned NOT NULL DEFAULT 0,
  status_id int unsigned NOT NULL DEFAULT 0,
  dept_id int unsigned NOT NULL DEFAULT 0,
  sla_id int unsigned NOT NULL DEFAULT 0,
  topic_id int unsigned NOT NULL DEFAULT 0,
  staff_id int unsigned NOT NULL DEFAULT 0,
  team_id int unsigned NOT NULL DEFAULT 0,
  email_id int unsigned NOT NULL DEFAULT 0,
  lock_id int unsigned NOT NULL DEFAULT 0,
  flags int unsigned NOT NULL DEFAULT 0,
  sort int unsigned NOT NULL DEFAULT 0,
  ip_address varchar(64) NOT NULL DEFAULT '',
  source enum('Web','Email','Phone','API','Other') NOT NULL DEFAULT 'Other',
  source_extra varchar(40) NULL,
  isoverdue tinyint(1) unsigned NOT NULL DEFAULT 0,
  isanswered tinyint(1) unsigned NOT NULL DEFAULT 0,
  duedate datetime NULL,
  est_duedate datetime NULL,
  reopened datetime NULL,
  closed datetime NULL,
  lastupdate datetime NULL,
  created datetime NOT NULL,
  updated datetime NOT NULL,
  KEY dept_id (dept_id),
  KEY ticket_pid (ticket_pid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_ticket__cdata (
  ticket_id int unsigned NOT NULL PRIMARY KEY,
  subject mediumtext,
  priority mediumtext
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_ticket_status (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name varchar(60) NOT NULL,
  state varchar(16) NULL,
  mode int unsigned NOT NULL DEFAULT 0,
  flags int unsigned NOT NULL DEFAULT 0,
  sort int unsigned NOT NULL DEFAULT 0,
  properties text NOT NULL,
  created datetime NOT NULL,
  updated datetime NOT NULL,
  UNIQUE KEY name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_ticket_priority (
  priority_id tinyint NOT NULL AUTO_INCREMENT PRIMARY KEY,
  priority varchar(60) NOT NULL DEFAULT '',
  priority_desc varchar(30) NOT NULL DEFAULT '',
  priority_color varchar(7) NOT NULL DEFAULT '',
  priority_urgency tinyint unsigned NOT NULL DEFAULT 0,
  ispublic tinyint(1) NOT NULL DEFAULT 1,
  UNIQUE KEY priority (priority)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_thread (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  object_id int unsigned NOT NULL,
  object_type char(1) NOT NULL,
  extra text NULL,
  lastresponse datetime NULL,
  lastmessage datetime NULL,
  created datetime NOT NULL,
  KEY object_id (object_id),
  KEY object_type (object_type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_thread_entry (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  pid int unsigned NOT NULL DEFAULT 0,
  thread_id int unsigned NOT NULL DEFAULT 0,
  staff_id int unsigned NOT NULL DEFAULT 0,
  user_id int unsigned NOT NULL DEFAULT 0,
  type char(1) NOT NULL DEFAULT '',
  flags int unsigned NOT NULL DEFAULT 0,
  poster varchar(128) NOT NULL DEFAULT '',
  editor int unsigned NULL,
  editor_type char(1) NULL,
  source varchar(32) NOT NULL DEFAULT '',
  title varchar(255) NULL,
  body text NOT NULL,
  format varchar(16) NOT NULL DEFAULT 'html',
  ip_address varchar(64) NOT NULL DEFAULT '',
  extra text NULL,
  recipients text NULL,
  created datetime NOT NULL,
  updated datetime NOT NULL,
  KEY pid (pid),
  KEY thread_id (thread_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_thread_entry_email (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  thread_entry_id int unsigned NOT NULL,
  email_id int unsigned NULL,
  mid varchar(255) NOT NULL,
  headers text NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_thread_event (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  thread_id int unsigned NOT NULL DEFAULT 0,
  thread_type char(1) NOT NULL DEFAULT '',
  event_id int unsigned NULL,
  staff_id int unsigned NOT NULL,
  team_id int unsigned NOT NULL,
  dept_id int unsigned NOT NULL,
  topic_id int unsigned NOT NULL,
  data varchar(1024) NULL,
  username varchar(128) NOT NULL DEFAULT 'SYSTEM',
  uid int unsigned NULL,
  uid_type char(1) NOT NULL DEFAULT 'S',
  annulled tinyint(1) unsigned NOT NULL DEFAULT 0,
  timestamp datetime NOT NULL,
  KEY ticket_state (thread_id, event_id, timestamp)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_event (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name varchar(60) NOT NULL,
  description varchar(60) NULL,
  UNIQUE KEY name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_department (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  pid int unsigned NULL,
  sla_id int unsigned NOT NULL DEFAULT 0,
  schedule_id int unsigned NOT NULL DEFAULT 0,
  email_id int unsigned NOT NULL DEFAULT 0,
  manager_id int unsigned NOT NULL DEFAULT 0,
  flags int unsigned NOT NULL DEFAULT 0,
  name varchar(128) NOT NULL DEFAULT '',
  ispublic tinyint(1) unsigned NOT NULL DEFAULT 1,
  path varchar(128) NOT NULL DEFAULT '/',
  updated datetime NOT NULL,
  created datetime NOT NULL,
  UNIQUE KEY name (name, pid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_help_topic (
  topic_id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  topic_pid int unsigned NOT NULL DEFAULT 0,
  ispublic tinyint(1) unsigned NOT NULL DEFAULT 1,
  noautoresp tinyint(1) unsigned NOT NULL DEFAULT 0,
  flags int unsigned NULL DEFAULT 0,
  status_id int unsigned NOT NULL DEFAULT 0,
  priority_id int unsigned NOT NULL DEFAULT 0,
  dept_id int unsigned NOT NULL DEFAULT 0,
  staff_id int unsigned NOT NULL DEFAULT 0,
  team_id int unsigned NOT NULL DEFAULT 0,
  sla_id int unsigned NOT NULL DEFAULT 0,
  topic varchar(128) NOT NULL DEFAULT '',
  number_format varchar(32) NULL,
  sort int unsigned NOT NULL DEFAULT 0,
  created datetime NOT NULL,
  updated datetime NOT NULL,
  UNIQUE KEY topic (topic, topic_pid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_user (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  org_id int unsigned NOT NULL DEFAULT 0,
  default_email_id int NOT NULL DEFAULT 0,
  status int unsigned NOT NULL DEFAULT 0,
  name varchar(128) NOT NULL,
  created datetime NOT NULL,
  updated datetime NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_user_email (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id int unsigned NOT NULL,
  flags int unsigned NOT NULL DEFAULT 0,
  address varchar(255) NOT NULL,
  UNIQUE KEY address (address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_staff (
  staff_id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  dept_id int unsigned NOT NULL DEFAULT 0,
  role_id int unsigned NOT NULL DEFAULT 0,
  username varchar(32) NOT NULL DEFAULT '',
  firstname varchar(32) NULL,
  lastname varchar(32) NULL,
  email varchar(255) NULL,
  isactive tinyint(1) NOT NULL DEFAULT 1,
  isadmin tinyint(1) NOT NULL DEFAULT 0,
  lastlogin datetime NULL,
  updated datetime NOT NULL,
  UNIQUE KEY username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_team (
  team_id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  lead_id int unsigned NOT NULL DEFAULT 0,
  flags int unsigned NOT NULL DEFAULT 1,
  name varchar(125) NOT NULL DEFAULT ''
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_attachment (
  id int unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY,
  object_id int unsigned NOT NULL,
  type char(1) NOT NULL,
  file_id int unsigned NOT NULL,
  name varchar(255) NULL,
  inline tinyint(1) unsigned NOT NULL DEFAULT 0,
  lang varchar(16) NULL,
  UNIQUE KEY file_type (object_id, file_id, type)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;

CREATE TABLE PREFIX_file (
  id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ft char(1) NOT NULL DEFAULT 'T',
  bk char(1) NOT NULL DEFAULT 'D',
  type varchar(255) NOT NULL DEFAULT '',
  size bigint unsigned NOT NULL DEFAULT 0,
  `key` varchar(86) NOT NULL,
  signature varchar(86) NOT NULL,
  name varchar(255) NOT NULL DEFAULT '',
  attrs varchar(255) NULL,
  created datetime NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3;
