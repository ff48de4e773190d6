"""The interactions service: follow-ups (跟进记录), tasks and reminders (待办/提醒), customer feedback."""
