from bot.cli import main_entry

main_entry()
