from services.tracker.app import main

main()
