from kastle.app import main

main()
